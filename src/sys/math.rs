//! The two functions of the C math library that vzrun's dependencies call: `pow` and
//! `log2` (libcgroups turns cpu shares into a cgroup v2 weight with them, indicatif its
//! rates). Defined here, from the `libm` crate (musl's algorithms in Rust), the linker
//! resolves them inside the binary and drops libm.so: every start of vzrun loaded it and
//! ran its IFUNC resolvers, which mapped 0.33 MB of it into each process for two
//! functions a start rarely calls.

/// `x` raised to the power `y`, as C's `pow`.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// The base-2 logarithm of `x`, as C's `log2`.
#[no_mangle]
pub extern "C" fn log2(x: f64) -> f64 {
    libm::log2(x)
}
