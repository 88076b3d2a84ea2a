"""The step-by-step view of a backward pass: tapped intermediates, compared one by one from the loss back."""

from gradtwin.steps.compare import StepCheck, StepsReport, check_steps, compare_steps
from gradtwin.steps.tap import Tape, recording, tap

__all__ = ["StepCheck", "StepsReport", "Tape", "check_steps", "compare_steps", "recording", "tap"]
