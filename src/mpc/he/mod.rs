//! Ring-LWE products of one server's shares by another's (the dealer-free bilinear form).
//!
//! * [`modulus`]: arithmetic modulo a prime below `2^54` (Shoup and Barrett reductions);
//! * [`ntt`]: the negacyclic number-theoretic transform (AVX-512 IFMA for primes below `2^50`);
//! * [`rlwe`]: keys, encryption, modulus switching, decryption, over a set of four primes;
//! * [`wire`]: residues packed at their primes' width, and their check on receipt;
//! * [`harden`]: what an evaluator does before returning a product (re-randomisation, prime drop,
//!   flooding), with the noise bound;
//! * [`product`]: the two-round protocol that gives the servers shares of `<X_i, Y_j>` modulo
//!   `2^64` for a list of pairs, each server encrypting its share of `Y` and every peer
//!   multiplying by its share of `X`, in coefficient-packed blocks (cheap for dense grids);
//! * [`orient`]: which end of each pair heads it in the slot products, balanced so that a plan
//!   takes few blocks;
//! * [`slots`]: the same modulo a prime `T`, one slot per pair and dimension (the products
//!   follow the pairs, whatever rows they touch);
//! * [`crt`]: slot products of 64-bit shares modulo `2^64`, from runs modulo primes combined by
//!   the Chinese remainder theorem (five, or with two servers three or four and a lift).

pub mod crt;
pub mod harden;
pub mod modulus;
pub mod ntt;
pub mod orient;
pub mod product;
pub mod rlwe;
pub mod slots;
pub mod wire;
