"""The one exception the analysis layer raises for problems a user can fix."""


class AnalysisError(ValueError):
    """Results are missing or unreadable, or a column, value or filter does not match the data.

    The message says what was asked and what is available; the CLI prints it as one line.
    """
