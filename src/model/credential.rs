//! How credentials look on the wire, shared by the server (`auth`) and the client.

/// A personal access token starts with this.
pub const TOKEN_PREFIX: &str = "pcp_";
/// A robot's secret starts with this.
pub const ROBOT_SECRET_PREFIX: &str = "pcr_";
/// A robot's username starts with this (`robot$<namespace>+<name>`).
pub const ROBOT_PREFIX: &str = "robot$";
