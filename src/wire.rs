//! placeholder
/// x
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// x
    #[error("x")]
    X,
}
