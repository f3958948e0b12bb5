//! One node as the tracker follows it: its place in the run, its images, what the watches showed,
//! what became of its taint and its pullers. Grouped by concern; everything starts empty but what
//! the node list said.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;

use crate::images::ImageMask;
use crate::nodes::EligibleNode;
use crate::outcome::Outcome;
use crate::types::{NodeRef, PullerKind};
use crate::workloads::{ImageSet, LeftOuts};

use super::TaintAction;

/// A node's place in the run. Counted per state in one place ([`super::Tracker::set`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum State {
    #[default]
    Queued,
    Creating,
    /// Created, not yet started (no `startTime` or pod for a Job, not bound for a pod).
    Unstarted,
    /// Created and started, no verdict yet.
    Running,
    Done,
}

pub(super) const STATES: usize = 5;

/// Its startup taint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum TaintState {
    /// The node does not carry the startup taint.
    #[default]
    None,
    /// It does; nothing decided yet.
    Carried,
    /// Removal attempt number `attempt` (from 1) is in flight; `release`: without every image,
    /// held past the maximum.
    Removing {
        attempt: u8,
        release: bool,
    },
    Done(TaintAction),
}

/// One image failure, kept for the report.
#[derive(Clone, Debug)]
pub(super) struct ImageNote {
    pub image: u8,
    pub message: String,
}

/// What became of each image of the run on the node (masks of [`crate::images::ImageMask`]).
#[derive(Clone, Debug, Default)]
pub(super) struct Images {
    /// What its puller pulls (has, or will have).
    pub wanted: ImageMask,
    /// Already on the node (`SKIP_PRESENT`).
    pub present: ImageMask,
    pub pulled: ImageMask,
    pub failed: ImageMask,
    /// Held back by the image breaker.
    pub not_sent: ImageMask,
    /// Pull errors seen but still within the grace: (image, first seen).
    pub failing: Vec<(u8, Timestamp)>,
    /// The helper image's pull error, and since when.
    pub helper_failing: Option<(Timestamp, String)>,
    pub notes: Vec<ImageNote>,
}

impl Images {
    /// Its puller pulled every image it was given.
    pub fn complete(&self) -> bool {
        self.wanted != 0 && self.pulled & self.wanted == self.wanted
    }

    /// Note image `image`'s latest problem. `ErrImagePull` says why; the `ImagePullBackOff` that
    /// follows only says "Back-off", so it does not replace it.
    pub fn note(&mut self, image: u8, message: &str) {
        match self.notes.iter_mut().find(|n| n.image == image) {
            Some(n) if message.starts_with("ImagePullBackOff") && !n.message.starts_with("ImagePullBackOff") => {}
            Some(n) => n.message = message.to_string(),
            None => self.notes.push(ImageNote { image, message: message.to_string() }),
        }
    }
}

/// A kept puller of an earlier run on this node: what it holds, of the images this run asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Older {
    pub kind: PullerKind,
    pub name: String,
    pub uid: Option<String>,
    pub images: ImageMask,
    pub created_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Entry {
    pub name: String,
    /// The node's UID, for Events about it.
    pub uid: Option<String>,
    /// Since when it has carried the startup taint (its maximum hold counts from there).
    pub held_since: Option<Timestamp>,
    /// Its architecture (`kubernetes.io/arch`), for a pull that finds no variant for it.
    pub arch: Option<String>,
    /// The name of its puller (Job or pod), shared with the tracker's index of pullers by name.
    pub puller: Arc<str>,
    /// Its images, as indices into the run's: bit i of every mask in `images` is `set[i]`.
    pub set: ImageSet,
    /// What its set left out (`IMAGES_FROM`, more than 64 wanted there).
    pub left_out: LeftOuts,
    /// Its puller's UID once created: it is deleted as that object only.
    pub puller_uid: Option<String>,
    /// Its blocking taints (the run's taint table): its puller tolerates exactly these.
    pub taints: Box<[u16]>,
    pub state: State,
    pub seed: bool,
    /// Create attempts that did not go through.
    pub attempts: u8,
    pub images: Images,
    /// Order in which creates were confirmed: a relist only judges pullers confirmed before it began.
    pub confirmed: u64,
    pub created_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub verdict: Option<(Outcome, String)>,
    /// The Job and its pod as the watches showed them while the create was still in flight (the
    /// Job's event as it came: a Job created and deleted again before the create returned stays
    /// deleted).
    pub early_job: Option<Box<Event<Job>>>,
    pub early_pod: Option<Box<Event<Pod>>>,
    pub taint: TaintState,
    /// The deletion of its own puller was asked for.
    pub deleting: bool,
    /// What few nodes need (read with [`Entry::rare`], written with [`Entry::rare_mut`]).
    rare: Option<Box<Rare>>,
}

/// What few nodes of a run need, behind one box so that a node's entry stays small (5,000 of them
/// live for the whole run): the last problem the watches showed, an evicted pod being replaced,
/// the kept pullers of earlier runs.
#[derive(Clone, Debug, Default)]
pub(super) struct Rare {
    pub last_problem: Option<String>,
    /// `PULLER_KIND=pod`: its pod was evicted or preempted and is being deleted (that incarnation,
    /// by UID); once it is gone, a new one is created with what is left of the pull deadline.
    pub replacing: Option<String>,
    /// Attempts at deleting the evicted pod that did not go through.
    pub delete_attempts: u8,
    /// `PULLER_KIND=pod`: the replacement is not created before this time (the name rests).
    pub not_before: Option<Timestamp>,
    /// Successful pullers of earlier runs on this node: deleted once this run's puller succeeds.
    pub older: Vec<Older>,
    /// Those this run deleted.
    pub replaced: Vec<String>,
    /// Deletes of older pullers that failed: (name, the API's words).
    pub not_replaced: Vec<(String, String)>,
}

/// What a node without any of it reads.
static NO_RARE: Rare = Rare {
    last_problem: None,
    replacing: None,
    delete_attempts: 0,
    not_before: None,
    older: Vec::new(),
    replaced: Vec::new(),
    not_replaced: Vec::new(),
};

impl Entry {
    pub fn rare(&self) -> &Rare {
        self.rare.as_deref().unwrap_or(&NO_RARE)
    }

    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_default()
    }

    /// Takes what it has of [`Rare`], leaving nothing.
    pub fn take_rare(&mut self) -> Rare {
        self.rare.take().map(|rare| *rare).unwrap_or_default()
    }

    /// A node as the node list showed it, with `puller` its puller's name (the images of its set it
    /// does not need are present).
    pub fn new(node: EligibleNode, puller: Arc<str>) -> Entry {
        let all = crate::images::all_images(node.set.len());
        Entry {
            name: node.name,
            uid: node.uid,
            held_since: node.held_since,
            arch: node.arch,
            puller,
            set: node.set,
            left_out: node.left_out,
            taints: node.taints,
            images: Images { wanted: node.images, present: all & !node.images, ..Default::default() },
            taint: if node.startup_tainted { TaintState::Carried } else { TaintState::None },
            ..Default::default()
        }
    }

    /// It carries the startup taint and no removal was decided yet.
    pub fn holds_taint(&self) -> bool {
        matches!(self.taint, TaintState::Carried | TaintState::Removing { .. })
    }

    /// The node, for an Event about it.
    pub fn node_ref(&self) -> NodeRef {
        NodeRef { name: self.name.clone(), uid: self.uid.clone() }
    }

    /// What a create of its puller needs to know of it.
    pub fn as_node(&self) -> EligibleNode {
        EligibleNode {
            name: self.name.clone(),
            taints: self.taints.clone(),
            set: self.set.clone(),
            images: self.images.wanted,
            ..Default::default()
        }
    }

    /// Every image of its set.
    pub fn all(&self) -> ImageMask {
        crate::images::all_images(self.set.len())
    }

    /// Its image at place `local` of its set, as the run numbers its images.
    pub fn global(&self, local: u8) -> usize {
        self.set[local as usize] as usize
    }

    /// The place of the run's image `global` in its set.
    pub fn local(&self, global: usize) -> Option<u8> {
        self.set.iter().position(|&id| id as usize == global).map(|p| p as u8)
    }
}
