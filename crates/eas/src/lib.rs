//! Exchange ActiveSync semantics (MS-ASHTTP, MS-ASCMD, MS-ASPROV) on top of the [`wbxml`] codec.
//! No I/O: the gateway feeds it request lines, headers and bodies.
#![forbid(unsafe_code)]
