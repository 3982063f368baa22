"""The course's harness: what runs the notebooks and keeps what they found, apart from the
pruning library it teaches.

- execution   headless runs that never wait forever (a cell timeout, a stalled kernel, one retry)
- results     each notebook's headline numbers, saved as strict JSON beside its executed copy
- run_course  the main job (`make course`): every notebook, a summary, the recorded reference run
- site        a run as pages to read from disk, with each notebook's highlights (`highlights`)
- sweep       one notebook over a grid of parameters, on a Dask cluster
- gpu_check   `make gpu-check`: the shapes runs and one paper epoch per baseline, timed on CUDA
"""
