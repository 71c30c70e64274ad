"""Model architectures. Each takes ``num_classes``, ``input_shape``, an ``activation`` factory and a
``norm`` factory from config, so one architecture serves every activation and normalisation option."""
