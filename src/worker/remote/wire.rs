//! What travels through the broker: a job's [`Request`] on the work stream, its [`Answer`] on the
//! submitting pool's results subject. Both are postcard, like the process wire.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::task::{Batch, Inputs, TaskError};

/// A job's encoded input(s): one job, or a chunk of one type (`map`), sent as one message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Input {
    One(ByteBuf),
    Batch(Vec<ByteBuf>),
}

impl From<Inputs> for Input {
    fn from(inputs: Inputs) -> Self {
        match inputs {
            Inputs::One(bytes) => Input::One(ByteBuf::from(bytes)),
            Inputs::Batch(all) => Input::Batch(all.iter().map(ByteBuf::from).collect()),
        }
    }
}

impl From<Input> for Inputs {
    fn from(input: Input) -> Self {
        match input {
            Input::One(bytes) => Inputs::One(bytes.into_vec()),
            Input::Batch(all) => {
                let mut batch = Batch::default();
                for input in &all {
                    batch.push_encoded(input);
                }
                Inputs::Batch(Box::new(batch))
            }
        }
    }
}

/// One job on the work stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    /// The submitting pool's id; its answer goes to that pool's results subject.
    pub(crate) pool: String,
    /// The task's id within its pool, and which attempt this is (its retries are new messages).
    pub(crate) task: u64,
    pub(crate) attempt: u32,
    /// The job's registered name.
    pub(crate) name: String,
    pub(crate) input: Input,
    /// The task's timeout, which the host enforces by killing its worker process.
    pub(crate) timeout_ns: Option<u64>,
    /// Where the answer goes without being stored ([`NatsConfig::fast_answers`]), if not to the
    /// results stream.
    ///
    /// [`NatsConfig::fast_answers`]: crate::NatsConfig::fast_answers
    pub(crate) fast_answer: Option<String>,
}

/// A job's outcome, from the host that ran it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) task: u64,
    pub(crate) attempt: u32,
    /// The delivery of the job that ran (1 the first time).
    pub(crate) delivery: u64,
    /// The encoded output (for a chunk: every job's outcome), or how the run failed.
    pub(crate) outcome: Result<ByteBuf, TaskError>,
}

/// The stable id of one attempt of a task: the message id the work stream deduplicates by.
pub(crate) fn job_id(pool: &str, task: u64, attempt: u32) -> String {
    format!("{pool}.{task}.{attempt}")
}

/// Encodes a message (postcard).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(value).map_err(|e| e.to_string())
}

/// Decodes a message (postcard); every byte from the broker is untrusted.
pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_and_an_answer_survive_the_trip() {
        let request = Request {
            pool: "p".into(),
            task: 7,
            attempt: 2,
            name: "square".into(),
            input: Input::Batch(vec![ByteBuf::from(vec![1, 2]), ByteBuf::from(vec![3])]),
            timeout_ns: Some(5),
            fast_answer: None,
        };
        let back: Request = decode(&encode(&request).unwrap()).unwrap();
        assert_eq!((back.task, back.attempt, back.timeout_ns), (7, 2, Some(5)));
        assert!(matches!(back.input, Input::Batch(ref b) if b.len() == 2 && b[1][..] == [3]));
        let answer = Answer {
            task: 7,
            attempt: 2,
            delivery: 3,
            outcome: Err(TaskError::Panicked("boom".into())),
        };
        let back: Answer = decode(&encode(&answer).unwrap()).unwrap();
        assert_eq!(back.outcome, Err(TaskError::Panicked("boom".into())));
        assert_eq!(back.delivery, 3);
        assert!(decode::<Answer>(&[0xff, 0xff, 0xff]).is_err());
    }
}
