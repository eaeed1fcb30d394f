"""The admin service every server runs, and the `dfs admin` command that calls it."""
