/// x
pub fn init(_jobs: crate::Jobs) {}
