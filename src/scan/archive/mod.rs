//! Reading layer and artifact blobs the way clients unpack them: [`decompress`] decodes the whole
//! stream by its magic bytes, [`tar`] reads it strictly. Both fail closed and count what they read
//! against the scan's [`limits`](crate::scan::limits).

pub mod decompress;
pub mod tar;
