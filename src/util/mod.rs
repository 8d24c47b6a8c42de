//! Small helpers shared by several layers.

pub mod double;
pub mod glob;
pub mod longdouble;
pub mod secret;
pub mod size;
