"""``python -m recozoo`` (also what ``torchrun -m recozoo fit ...`` launches)."""

from recozoo.cli.main import main

main()
