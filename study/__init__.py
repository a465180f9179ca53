"""The study's shared code: everything the commands at the top of the repository share."""
