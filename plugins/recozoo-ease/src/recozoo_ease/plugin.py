"""The entry point recozoo loads: registers EASE through recozoo's ``register_models`` hook."""

import recozoo


@recozoo.hookimpl
def register_models(register):
    from recozoo_ease.model import EASE
    register(EASE)
