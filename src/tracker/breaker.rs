//! Pull errors, per node × image: an error within its grace is only noted (the kubelet retries);
//! past it, the image fails on that node. An image that failed for good (not found, unauthorized) on
//! [`crate::policy::Policy::image_breaker`] nodes and succeeded on none is held back from the nodes
//! still queued. A helper image that does not pull fails its node after the same grace.

use crate::images::ImageMask;
use crate::outcome::{Outcome, is_permanent_pull_error, is_platform_mismatch};
use k8s_openapi::jiff::Timestamp;

use super::entry::State;
use super::{Action, Tracker, Warning, span};

/// Per image of the run: failures for good, successes, and why it is held back.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    failures: Vec<u32>,
    successes: Vec<u32>,
    /// Images held back, with the reason said once in the report.
    pub broken: Vec<Option<String>>,
}

impl Breaker {
    pub fn new(image_count: usize) -> Breaker {
        Breaker { failures: vec![0; image_count], successes: vec![0; image_count], broken: vec![None; image_count] }
    }

    /// A node whose images are `set` succeeded with these of them pulled.
    pub fn succeeded(&mut self, set: &[u32], pulled: ImageMask) {
        for (local, &idx) in set.iter().enumerate() {
            if pulled & (1 << local) != 0 {
                self.successes[idx as usize] += 1;
            }
        }
    }
}

impl Tracker {
    /// The clock, for node `i`: its pull errors past their grace fail their image; a helper image
    /// still failing past it fails the node.
    pub(super) fn expire_pull_errors(&mut self, i: usize, now: Timestamp) {
        let grace = span(self.policy.pull_error_grace);
        let expired: Vec<u8> = self.nodes[i]
            .images
            .failing
            .iter()
            .filter(|(_, since)| now.duration_since(*since) >= grace)
            .map(|(img, _)| *img)
            .collect();
        for img in expired {
            self.fail_image(i, img, now);
        }
        if self.nodes[i].state == State::Done {
            return;
        }
        if let Some((since, message)) = &self.nodes[i].images.helper_failing
            && now.duration_since(*since) >= grace
        {
            let reason = format!("the helper image cannot be pulled (HELPER_IMAGE): {message}");
            self.delete_own(i);
            self.conclude(i, Outcome::Failed, reason, now);
        }
    }

    /// Image `img` failed on node `i` for good: record it, feed the circuit breaker, and conclude
    /// the node if nothing else is left to wait for.
    pub(super) fn fail_image(&mut self, i: usize, img: u8, now: Timestamp) {
        let images = &mut self.nodes[i].images;
        let bit = 1 << img;
        if images.failed & bit != 0 || images.pulled & bit != 0 {
            return;
        }
        images.failed |= bit;
        images.failing.retain(|(f, _)| *f != img);
        let mut message = images.notes.iter().find(|n| n.image == img).map(|n| n.message.clone()).unwrap_or_default();
        if is_platform_mismatch(&message) {
            // The failure is this node's platform's, not the image's: said so, and not counted.
            let platform =
                self.nodes[i].arch.as_deref().map_or("this node's platform".into(), |a| format!("linux/{a}"));
            message = format!("the image has no variant for {platform}: {message}");
            self.nodes[i].images.note(img, &message);
        }
        let idx = self.nodes[i].global(img);
        if is_permanent_pull_error(&message) {
            let b = &mut self.breaker;
            b.failures[idx] += 1;
            if b.failures[idx] as usize >= self.policy.image_breaker && b.successes[idx] == 0 && b.broken[idx].is_none()
            {
                let reason = format!(
                    "not sent to the remaining nodes: it failed on the first {} nodes with: {message}",
                    b.failures[idx]
                );
                b.broken[idx] = Some(reason.clone());
                self.outbox.push(Action::Warn(Warning::ImageHeldBack { image: idx, reason: reason.clone() }));
                self.hold_back(idx, reason, now);
            }
        }
        self.settle(i, now);
    }

    /// The breaker: queued nodes no longer get image `idx`; a node left with nothing to pull fails.
    fn hold_back(&mut self, idx: usize, reason: String, now: Timestamp) {
        // A node whose older kept puller holds the image has it on disk: the kubelet finds it there,
        // and the new puller must hold it too, or the older one could never be replaced.
        let queued: Vec<(u32, u8)> = self
            .pacer
            .queue
            .iter()
            .filter_map(|&q| {
                let e = &self.nodes[q as usize];
                let local = e.local(idx)?;
                let bit = 1u64 << local;
                (e.images.wanted & bit != 0 && !e.rare().older.iter().any(|o| o.images & bit != 0))
                    .then_some((q, local))
            })
            .collect();
        for (q, local) in queued {
            let bit = 1u64 << local;
            let images = &mut self.nodes[q as usize].images;
            images.wanted &= !bit;
            images.not_sent |= bit;
            images.note(local, &reason);
            if images.wanted == 0 {
                self.pacer.queue.retain(|&x| x != q);
                let reason = self.image_reason(q as usize).unwrap_or_else(|| reason.clone());
                self.conclude(q as usize, Outcome::Failed, reason, now);
            }
        }
    }
}
