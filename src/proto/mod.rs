//! The protocols, pure: parsing and rendering over byte slices, with explicit limits. No I/O,
//! no logging, no clock: the fuzz targets call these directly.

pub mod cgi;
pub mod fcgi;
pub mod http;
pub mod metrics;
pub mod status;
