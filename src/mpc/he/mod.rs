//! Ring-LWE products of one server's shares by another's (the dealer-free bilinear form).
//!
//! * [`modulus`]: arithmetic modulo a 54-bit prime (Shoup and Barrett reductions);
//! * [`ntt`]: the negacyclic number-theoretic transform;
//! * [`rlwe`]: keys, encryption of `Z_2^64` coefficients, modulus switching, decryption;
//! * [`product`]: the two-round protocol that gives the servers shares of `<X_i, Y_j>` for a
//!   list of pairs, each server encrypting its share of `Y` and every peer multiplying by its
//!   share of `X` (packing, re-randomisation, flooding and masking explained there).

pub mod harden;
pub mod modulus;
pub mod ntt;
pub mod product;
pub mod rlwe;
pub mod slots;
pub mod wire;
