//! Nodes that join while the run goes on (`STARTUP_TAINT_WATCH_SECONDS`): for a bounded window after
//! its start the run watches the nodes, and every node that appears carrying the startup taint is
//! tracked like a listed one (pulled on, then released). A held node no puller can reach yet (not
//! Ready while it boots) waits for the window: it is judged when it becomes reachable, or `held`
//! when the window ends. The next run takes over from its own node list.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use tracing::info;

use crate::nodes::{Decision, Eligibility, Unreachable, assign_images, decide};
use crate::outcome::Outcome;
use crate::types::Watched;

use super::{Action, Tracker, span};

/// The window, while it is open.
#[derive(Debug, Default)]
pub(super) struct Window {
    /// When it closes; `None` when the run watches no nodes, or no longer.
    pub until: Option<Timestamp>,
    /// Held nodes no puller can reach yet, by name.
    waiting: HashMap<String, Unreachable>,
}

impl Tracker {
    /// At the start: with `STARTUP_TAINT_WATCH_SECONDS`, watch the nodes until then.
    pub(super) fn open_window(&mut self, now: Timestamp) {
        let seconds = self.policy.selection.startup_taint_watch_seconds;
        if seconds == 0 {
            return;
        }
        self.watches.ask(Watched::Nodes, false);
        self.outbox.push(Action::Watch(Watched::Nodes));
        self.window.until = Some(now + span(Duration::from_secs(seconds)));
    }

    /// The window is open: the run watches for joining nodes and does not end before it closes.
    pub(super) fn window_open(&self) -> bool {
        self.window.until.is_some()
    }

    /// A held node no puller can reach: it waits while the window is open, else it is `held` now.
    pub(super) fn unreachable(&mut self, unreachable: Unreachable, now: Timestamp) {
        if self.window_open() {
            self.window.waiting.insert(unreachable.node.name.clone(), unreachable);
            return;
        }
        let Unreachable { node, reason } = unreachable;
        let i = self.track(node);
        self.nodes[i].images.wanted = 0;
        self.conclude(i, Outcome::Held, format!("held by the startup taint and unreachable: {reason}"), now);
    }

    /// The clock: close the window when its time is up (or the run was interrupted); the nodes
    /// still waiting are `held`.
    pub(super) fn check_window(&mut self, now: Timestamp) {
        let Some(until) = self.window.until else { return };
        if now < until && self.interrupted.is_none() {
            return;
        }
        self.window.until = None;
        let mut waiting: Vec<Unreachable> = self.window.waiting.drain().map(|(_, u)| u).collect();
        waiting.sort_by(|a, b| a.node.name.cmp(&b.node.name));
        info!(unreachable = waiting.len(), "the window for joining nodes closed");
        for unreachable in waiting {
            self.unreachable(unreachable, now);
        }
    }

    /// Fold one event of the node watch in.
    pub(super) fn on_node_event(&mut self, event: Event<Node>, now: Timestamp) {
        let node = match event {
            Event::Apply(node) | Event::InitApply(node) => node,
            Event::Delete(node) => {
                if let Some(name) = &node.metadata.name {
                    self.window.waiting.remove(name);
                }
                return;
            }
            Event::InitDone => {
                self.watches.set_listed(Watched::Nodes);
                return;
            }
            Event::Init => return,
        };
        let Some(name) = node.metadata.name.clone() else { return };
        if !self.window_open() || self.node_named(&name).is_some() {
            return;
        }
        let rule = Eligibility { selection: &self.policy.selection, puller: &self.template.settings };
        let (mut taints, mut catalog) =
            (std::mem::take(&mut self.template.taints), std::mem::take(&mut self.template.catalog));
        let decision = decide(&node, &rule, &mut taints, &mut catalog);
        (self.template.taints, self.template.catalog) = (taints, catalog);
        match decision {
            Decision::Eligible(mut joined) if joined.startup_tainted => {
                assign_images(&mut joined, &mut self.template.catalog);
                self.window.waiting.remove(&name);
                info!(node = %name, "a node joined with the startup taint");
                let i = self.track(joined);
                self.admit(i, now);
                if self.nodes[i].state == super::entry::State::Queued {
                    self.pacer.queue.push_back(i as u32);
                }
            }
            Decision::Unreachable(unreachable) => {
                self.window.waiting.insert(name, unreachable);
            }
            Decision::Eligible(_) | Decision::Skipped(_) | Decision::NotConsidered => {
                self.window.waiting.remove(&name);
            }
        }
    }
}
