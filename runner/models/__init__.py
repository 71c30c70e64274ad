"""Model architectures. Each takes ``num_classes``, ``input_shape``, an ``activation`` factory and a
``norm`` factory from config, so one architecture serves every activation and normalisation option.

Layers are built through the helpers in ``runner.models.layers`` (``conv_norm_activation``,
``linear_norm_activation``, ``standalone_activation``), which widen the layer before a maxout activation,
and residual blocks are ``layers.Residual`` with a ``branch``, which stochastic depth and Fixup look for."""
