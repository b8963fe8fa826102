//! One writer task per long-lived stream: drain whatever is queued into one buffer, write
//! it in one go within a deadline, repeat.
//!
//! Why: a write per item cost a syscall and a wake-up per message on both sides; under
//! load the queue fills while the previous write is in flight, so the next write carries
//! everything that piled up. Node-to-node peer streams, the node's half of client
//! sessions and the client's half all write this way; what differs is how an item is
//! encoded, how a batch reaches the stream and what a failed or late write means, which a
//! [`BatchSink`] says.
//!
//! Bounds: a batch stops growing once it holds [`BatchLimits::bytes_max`] bytes (one item
//! may overshoot it; a longer backlog goes out in several writes), and a write that takes
//! longer than [`BatchLimits::write_timeout_ms`] is abandoned and reported to the sink.

use std::time::Duration;

use tokio::sync::mpsc;

/// How one writer batches and how long one write may take.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Encoded bytes gathered into one write.
    pub bytes_max: usize,
    /// Deadline for one write.
    pub write_timeout_ms: u64,
}

/// Why a batch did not reach the stream.
#[derive(Debug)]
pub enum WriteFailure<E> {
    /// The write itself failed.
    Failed(E),
    /// The write did not complete within [`BatchLimits::write_timeout_ms`].
    TimedOut,
}

/// What the writer does after a failed write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep writing what comes next.
    Continue,
    /// End the writer at once, without finishing the stream.
    Stop,
}

/// How a writer's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The queue closed and everything in it was written: the stream may be finished.
    Drained,
    /// The sink stopped after a failed write.
    Stopped,
}

/// A queue a writer drains: tokio's bounded and unbounded channels.
pub trait Queue: Send {
    type Item: Send;

    /// Waits for the next item; `None` once the queue is closed and empty.
    fn recv(&mut self) -> impl Future<Output = Option<Self::Item>> + Send;

    /// The next item if one is queued already.
    fn try_recv(&mut self) -> Option<Self::Item>;
}

/// One stream's side of a writer: encodes items, writes batches, handles failures.
pub trait BatchSink<T>: Send {
    type Error: Send;

    /// Appends one item's frame to the batch; an item that cannot be framed is the
    /// sink's to report, and leaves the batch as it was.
    fn encode(&mut self, batch: &mut Vec<u8>, item: T);

    /// Writes one non-empty batch to the stream.
    fn write(&mut self, batch: &[u8]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// A batch did not reach the stream; `queue` still holds what came after it.
    fn failed<Q: Queue<Item = T>>(
        &mut self,
        failure: WriteFailure<Self::Error>,
        queue: &mut Q,
    ) -> Flow;
}

/// Writes everything `queue` yields through `sink`, batched, until the queue closes
/// ([`Ended::Drained`]) or the sink stops after a failure ([`Ended::Stopped`]).
pub async fn write_batches<Q, S>(queue: &mut Q, sink: &mut S, limits: BatchLimits) -> Ended
where
    Q: Queue,
    S: BatchSink<Q::Item>,
{
    let mut buf = Vec::new();
    let wait = Duration::from_millis(limits.write_timeout_ms);
    while let Some(first) = queue.recv().await {
        buf.clear();
        sink.encode(&mut buf, first);
        while buf.len() < limits.bytes_max {
            match queue.try_recv() {
                Some(item) => sink.encode(&mut buf, item),
                None => break,
            }
        }
        if buf.is_empty() {
            continue;
        }
        let failure = match tokio::time::timeout(wait, sink.write(&buf)).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => WriteFailure::Failed(e),
            Err(_) => WriteFailure::TimedOut,
        };
        if sink.failed(failure, queue) == Flow::Stop {
            return Ended::Stopped;
        }
    }
    Ended::Drained
}

impl<T: Send> Queue for mpsc::Receiver<T> {
    type Item = T;

    fn recv(&mut self) -> impl Future<Output = Option<T>> + Send {
        mpsc::Receiver::recv(self)
    }

    fn try_recv(&mut self) -> Option<T> {
        mpsc::Receiver::try_recv(self).ok()
    }
}

impl<T: Send> Queue for mpsc::UnboundedReceiver<T> {
    type Item = T;

    fn recv(&mut self) -> impl Future<Output = Option<T>> + Send {
        mpsc::UnboundedReceiver::recv(self)
    }

    fn try_recv(&mut self) -> Option<T> {
        mpsc::UnboundedReceiver::try_recv(self).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each batch; fails the writes listed in `fail` (by index).
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        fail: Vec<usize>,
        failures: usize,
    }

    impl BatchSink<u8> for Recorder {
        type Error = ();

        fn encode(&mut self, batch: &mut Vec<u8>, item: u8) {
            batch.push(item);
        }

        async fn write(&mut self, batch: &[u8]) -> Result<(), ()> {
            let n = self.writes.len();
            self.writes.push(batch.to_vec());
            if self.fail.contains(&n) {
                Err(())
            } else {
                Ok(())
            }
        }

        fn failed<Q: Queue<Item = u8>>(&mut self, _: WriteFailure<()>, _: &mut Q) -> Flow {
            self.failures += 1;
            Flow::Continue
        }
    }

    const LIMITS: BatchLimits = BatchLimits {
        bytes_max: 3,
        write_timeout_ms: 1_000,
    };

    #[tokio::test]
    async fn what_is_queued_goes_out_in_batches_up_to_the_cap() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        for i in 0..7u8 {
            // invariant: `rx` lives in this test, so the unbounded send cannot fail.
            tx.send(i).unwrap();
        }
        drop(tx);
        let mut sink = Recorder::default();
        assert_eq!(
            write_batches(&mut rx, &mut sink, LIMITS).await,
            Ended::Drained
        );
        assert_eq!(sink.writes, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }

    #[tokio::test]
    async fn a_failed_write_is_reported_and_the_writer_goes_on() {
        let (tx, mut rx) = mpsc::channel(8);
        for i in 0..4u8 {
            // invariant: `rx` lives in this test and 4 items fit the 8-slot channel.
            tx.send(i).await.unwrap();
        }
        drop(tx);
        let mut sink = Recorder {
            fail: vec![0],
            ..Recorder::default()
        };
        assert_eq!(
            write_batches(&mut rx, &mut sink, LIMITS).await,
            Ended::Drained
        );
        assert_eq!(sink.failures, 1);
        assert_eq!(sink.writes, vec![vec![0, 1, 2], vec![3]]);
    }
}
