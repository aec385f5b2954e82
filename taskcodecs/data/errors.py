"""The one error type of the data layer: its message names the file and the problem."""


class DatasetError(ValueError):
    """A dataset file or folder is missing, corrupt or inconsistent."""
