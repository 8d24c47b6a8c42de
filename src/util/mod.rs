//! Small helpers shared by several layers.

pub mod double;
pub mod either;
pub mod glob;
pub mod longdouble;
pub mod rdb;
pub mod secret;
pub mod size;
