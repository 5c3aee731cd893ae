use super::{Backend, Shutdown};
use crate::task::{ErasedTask, Finisher, TaskError};
use crate::value::Value;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
/// x
#[derive(Debug, Clone, Default)]
pub struct ProcessConfig {}
pub(crate) struct ProcessWorker;
impl ProcessWorker {
    pub(crate) fn spawn(
        _c: ProcessConfig,
        _f: Arc<Finisher>,
        _l: Arc<AtomicUsize>,
    ) -> std::io::Result<Self> {
        Err(std::io::Error::other("todo"))
    }
}
impl Backend for ProcessWorker {
    fn submit(&self, task: Box<dyn ErasedTask>) -> Result<(), Box<dyn ErasedTask>> {
        Err(task)
    }
    fn shutdown(&self, _how: Shutdown) {}
    fn finished(&self) -> Value<(), TaskError> {
        Value::ready(Ok(()))
    }
}
