//! Small helpers shared by several layers.

pub mod glob;
pub mod longdouble;
pub mod secret;
pub mod size;
