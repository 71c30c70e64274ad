"""What a run watches or keeps besides training itself, as loop callbacks built from config groups:
weight averages (``averaging``: ``runner.callbacks.averaging``), the babysitting diagnostics (``diagnostics``:
``runner.callbacks.diagnostics``) and loggers (``logger``: ``runner.callbacks.loggers``).

A callback is any object with some of these methods, which ``runner.loop`` calls at these points:

- ``on_train_start(run, state)``: before the first epoch (and before a resumed run's state comes back);
- ``on_before_step(run, state)``: after the backward pass, before the optimizer step (gradients are there);
- ``on_step_end(run, state, loss)``: after the step; ``loss`` is a device tensor, do not read it every step;
- ``on_epoch_end(run, state, row)``: after evaluation; may add keys to the epoch's metrics row;
- ``on_train_end(run, state, summary)``: before the summary is written; may add keys to it;
- ``state_dict()`` and ``load_state_dict(state)``: what the callback keeps goes into the checkpoint and
  comes back when the run resumes.

A callback whose ``changes_training`` is true (lookahead moves the weights) runs before the others, so that
those that only watch (an EMA, a logger) see the weights training goes on from. One whose ``test_evaluations``
is N evaluates another network N times beside each evaluation of the run's own (an EMA: once); a time budget
counts them (``runner.budget``).
"""
