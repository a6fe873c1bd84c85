//! A query plan whose every operator answers to the query's leash. DataFusion's operators
//! poll their inputs batch by batch; a CPU-bound one (a cross join feeding an aggregate)
//! can go on for minutes inside one poll of the query's task without ever yielding, so
//! neither a time limit nor a dropped task would reach it. Wrapped here, every operator's
//! input is a stream that, before each batch:
//! - ends the query with the leash's cut when it is past its deadline or stopped;
//! - yields to the other queries' tasks once its thread has run a slice without yielding
//!   (so that queries share the query threads, and an aborted task is dropped);
//!
//! and after each batch refuses one larger than the query's memory (a value built by
//! `repeat` or a string that doubles at each step is never counted by the memory pool,
//! which only sorts, joins and aggregates use).

use std::cell::Cell;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use futures::{Future, Stream, StreamExt};

use super::leash::Leash;

/// How long a query thread runs a task before the task yields.
const SLICE: Duration = Duration::from_millis(2);

thread_local! {
    /// When the task running on this thread last started or yielded.
    static RUNNING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Whether the task on this thread has run a whole slice (and the slice starts again).
fn slice_spent() -> bool {
    RUNNING_SINCE.with(|since| {
        let now = Instant::now();
        match since.get() {
            Some(start) if now.duration_since(start) >= SLICE => {
                since.set(None);
                true
            }
            Some(_) => false,
            None => {
                since.set(Some(now));
                false
            }
        }
    })
}

/// The task gave up its thread (waiting for input): the next slice starts afresh.
fn slice_ends() {
    RUNNING_SINCE.with(|since| since.set(None));
}

/// `plan` with every operator on the leash; no batch may hold more than `batch_limit`
/// bytes.
pub fn wrap(
    plan: Arc<dyn ExecutionPlan>,
    leash: &Leash,
    batch_limit: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let checked: Arc<dyn ExecutionPlan> = Arc::new(CheckedExec {
            properties: node.properties().clone(),
            input: node,
            leash: leash.clone(),
            batch_limit,
        });
        Ok(Transformed::yes(checked))
    })
    .map(|t| t.data)
}

#[derive(Debug)]
struct CheckedExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    leash: Leash,
    batch_limit: usize,
}

impl DisplayAs for CheckedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckedExec")
    }
}

impl ExecutionPlan for CheckedExec {
    fn name(&self) -> &str {
        "CheckedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return Err(DataFusionError::Internal(
                "CheckedExec has exactly one input".into(),
            ));
        };
        Ok(Arc::new(Self {
            properties: input.properties().clone(),
            input,
            leash: self.leash.clone(),
            batch_limit: self.batch_limit,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(Checked {
            inner: self.input.execute(partition, context)?,
            leash: self.leash.clone(),
            batch_limit: self.batch_limit,
            yielding: None,
            done: false,
        }))
    }
}

struct Checked {
    inner: SendableRecordBatchStream,
    leash: Leash,
    batch_limit: usize,
    /// The yield under way, when the slice was spent.
    yielding: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Ended by the leash or a batch too large: nothing more comes.
    done: bool,
}

impl Checked {
    fn end(
        &mut self,
        e: DataFusionError,
    ) -> Poll<Option<Result<datafusion::arrow::record_batch::RecordBatch>>> {
        self.done = true;
        Poll::Ready(Some(Err(e)))
    }
}

impl Stream for Checked {
    type Item = Result<datafusion::arrow::record_batch::RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.yielding.is_none() && slice_spent() {
            self.yielding = Some(Box::pin(tokio::task::yield_now()));
        }
        if let Some(yielding) = self.yielding.as_mut() {
            std::task::ready!(yielding.as_mut().poll(cx));
            self.yielding = None;
        }
        if let Err(cut) = self.leash.check() {
            return self.end(DataFusionError::External(Box::new(cut)));
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => {
                slice_ends();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(batch))) => {
                // The buffers the batch holds, shared or not: what it keeps in memory
                // (cheaper than measuring its rows, on every operator's every batch).
                let bytes = batch.get_array_memory_size();
                if bytes > self.batch_limit {
                    let limit = self.batch_limit;
                    return self.end(DataFusionError::ResourcesExhausted(format!(
                        "one step of the query made {bytes} bytes of values at once, more than its memory ({limit} bytes)"
                    )));
                }
                Poll::Ready(Some(Ok(batch)))
            }
            other => other,
        }
    }
}

impl RecordBatchStream for Checked {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        self.inner.schema()
    }
}
