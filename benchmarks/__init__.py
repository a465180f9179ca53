"""Speed and accuracy measurements, each a script run from the repository root as
`python -m benchmarks.<name>`; their dated results are in docs/benchmarks.md."""
