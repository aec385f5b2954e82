"""What combines the codec library, vinfo and analysis: the demo and the study
(``python -m taskcompat.demo [--study]``)."""
