//! containerd drives vzrun end to end (the suite lands in a later commit).

mod common;
