//! The Mercato network launcher (`up`, `down`, `status`) and the benchmark driver.
//!
//! Nothing is built here yet (issue "One-command network").
//!
//! # Layout
//! Empty.
