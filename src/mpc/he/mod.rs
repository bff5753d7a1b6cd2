//! Ring-LWE products of one server's shares by another's (the dealer-free bilinear form).
//!
//! * [`modulus`]: arithmetic modulo a 54-bit prime (Shoup and Barrett reductions);
//! * [`ntt`]: the negacyclic number-theoretic transform;
//! * [`rlwe`]: keys, encryption of `Z_2^64` coefficients, modulus switching, decryption.

pub mod modulus;
pub mod ntt;
pub mod product;
pub mod rlwe;
