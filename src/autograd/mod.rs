//! Reverse-mode autograd.
//!
//! Recording is on demand: an op records how it was computed only when one of its inputs is
//! *tracked* (a variable from `Tensor::requires_grad`, or computed from one) and grad mode is on.
//! Inference over plain weight tensors records nothing and pays one flag check per op.
//!
//! The record is kept on the output tensor itself (`Tensor::op`) rather than on a global tape, so
//! the graph's memory is freed as soon as the user drops the outputs (an evaluation pass that never
//! calls `backward` leaks nothing). `backward` rebuilds the tape order — a reverse topological
//! sort of the recorded nodes — and walks it once. All backward rules are in `backward.rs`.

mod backward;
mod op;

pub use op::{Op, PadMode};

use crate::tensor::{Tensor, TensorId};
use crate::{Error, Result};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// While the guard lives, no op records anything (like torch.no_grad()).
pub struct NoGradGuard {
    prev: bool,
}

pub fn no_grad() -> NoGradGuard {
    let prev = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { prev }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.prev));
    }
}

/// Gradients by tensor id. Reusing one store across several `backward_into` calls accumulates.
#[derive(Default)]
pub struct GradStore {
    grads: HashMap<TensorId, Tensor>,
}

impl GradStore {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.grads.get(&t.id())
    }
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.grads.remove(&t.id())
    }
    pub fn len(&self) -> usize {
        self.grads.len()
    }
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }
    fn accumulate(&mut self, id: TensorId, g: Tensor) -> Result<()> {
        let g = match self.grads.remove(&id) {
            Some(prev) => prev.add(&g)?,
            None => g,
        };
        self.grads.insert(id, g);
        Ok(())
    }
}

impl Tensor {
    /// Gradients of this scalar with respect to every variable it depends on.
    pub fn backward(&self) -> Result<GradStore> {
        let mut store = GradStore::new();
        self.backward_into(&mut store)?;
        Ok(store)
    }

    /// Like `backward`, adding into the gradients already in `store` (gradient accumulation).
    pub fn backward_into(&self, store: &mut GradStore) -> Result<()> {
        self.walk_backward(store, None)
    }

    /// The gradients with respect to `targets` only (torch.autograd.grad): the walk skips every
    /// part of the graph that does not lead to one of them, so the gradient of a loss at the
    /// last layer of a deep network costs that layer's backward, not the whole network's.
    pub fn grad_for(&self, targets: &[&Tensor]) -> Result<GradStore> {
        let order = topological_order(self);
        let wanted: HashSet<TensorId> = targets.iter().map(|t| t.id()).collect();
        // inputs come before the nodes that use them in `order`: one forward pass marks every
        // node from which a target can be reached
        let mut leads: HashSet<TensorId> = HashSet::new();
        for node in &order {
            let reaches = wanted.contains(&node.id()) || node.op().is_some_and(|op| op.inputs().iter().any(|i| leads.contains(&i.id())));
            if reaches {
                leads.insert(node.id());
            }
        }
        let mut store = GradStore::new();
        self.walk_backward(&mut store, Some(&leads))?;
        store.grads.retain(|id, _| wanted.contains(id));
        Ok(store)
    }

    /// The reverse walk; with `only`, gradients flow only into the nodes in it.
    fn walk_backward(&self, store: &mut GradStore, only: Option<&HashSet<TensorId>>) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Backward(format!("backward needs a scalar loss, got shape {:?}", self.shape())));
        }
        if !self.tracked() {
            return Err(Error::Backward("the loss does not depend on any variable (nothing was recorded)".into()));
        }
        let _g = no_grad();
        let order = topological_order(self);
        // Intermediate gradients live here and are dropped once consumed; variables' go to `store`.
        let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
        grads.insert(self.id(), Tensor::full_on(1.0, self.shape(), self.dtype(), self.device())?);
        for node in order.iter().rev() {
            let Some(grad) = grads.remove(&node.id()) else { continue };
            if node.is_var() {
                store.accumulate(node.id(), grad)?;
                continue;
            }
            let Some(op) = node.op() else { continue };
            for (input, g) in backward::input_grads(op, node, &grad)? {
                if !input.tracked() || only.is_some_and(|o| !o.contains(&input.id())) {
                    continue;
                }
                if g.shape() != input.shape() {
                    return Err(Error::Backward(format!(
                        "rule for {} gave a gradient of shape {:?} for an input of shape {:?}",
                        op.name(),
                        g.shape(),
                        input.shape()
                    )));
                }
                let g = if g.dtype() != input.dtype() { g.to_dtype(input.dtype())? } else { g };
                match grads.remove(&input.id()) {
                    Some(prev) => grads.insert(input.id(), prev.add(&g)?),
                    None => grads.insert(input.id(), g),
                };
            }
        }
        Ok(())
    }
}

/// Tracked nodes reachable from `root`, each after all of its inputs (iterative DFS: a deep chain
/// must not overflow the stack).
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            for input in op.inputs() {
                if input.tracked() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}
