"""Settings shared by tests that run the active-learning loop (a plain module: the
subfolders' conftest.py files would shadow `from conftest import ...`)."""


def tiny_settings(**overrides):
    """RunConfig settings of a seconds-long robust AL run on digits."""
    settings = dict(
        dataset="digits", initial=30, per_round=30, budget=90, epochs=2, batch_size=30,
        eps=0.1, step_size=0.05, train_steps=2, eval_steps=3, validation_size=60, test_size=60,
    )
    settings.update(overrides)
    return settings
