//! The queue as the other parts of the feed reach it: its SDK client and URL, and the
//! limits of SQS's calls.

use aws_sdk_sqs::Client;

/// Messages a receive call takes at most (the SQS limit), and entries per batch call.
pub(super) const PER_CALL: usize = 10;
/// Batch calls (delete, change visibility) in flight at once.
pub(super) const CALLS_IN_FLIGHT: usize = 8;

/// The job's queue.
pub(super) struct Queue {
    pub(super) client: Client,
    pub(super) url: String,
}

/// Receipts in batches of at most 10, for the batch calls.
pub(super) fn batches(receipts: Vec<String>) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(receipts.len().div_ceil(PER_CALL));
    let mut rest = receipts.into_iter().peekable();
    while rest.peek().is_some() {
        out.push(rest.by_ref().take(PER_CALL).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_go_in_batches_of_ten() {
        let receipts: Vec<String> = (0..23).map(|n| n.to_string()).collect();
        let sizes: Vec<usize> = batches(receipts).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        assert!(batches(Vec::new()).is_empty());
    }
}
