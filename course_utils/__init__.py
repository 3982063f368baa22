"""course_utils: what the notebooks of "Pruning papers, reproduced" share.

One module per concern:

- profiles     the run profiles (smoke, shapes, quick, paper) and PROFILE="auto"
- device       the device (CUDA, MPS or CPU), seeding, mixed precision on CUDA
- data         datasets as tensors on the device (local copies first), a fast batch iterator
- models       the papers' networks at a width multiplier; torchvision's made narrower
- train        fit, evaluate, finetune, the baseline recipe, baselines cached as checkpoints
- uncertainty  intervals: Wilson for accuracies, paired differences, tiers of a ranking
- metrics      parameters, FLOPs, size on disk, measured latency
- surgery      the execution graph (torch.fx) and physical removal of filters
- chain        links between a conv and its consumer, for the oracles of papers 03 and 04
- criteria     filter scores, one function each with one signature, and plans from scores
- reduction    paper 05's loop: score, cut, fine-tune, repeat
- compression  magnitude pruning and k-means weight sharing (paper 02)
- superclasses paper 01's merge algorithm
- plots, widgets  shared figures and interactive controls
- labs, exercises, checks  the checks of the "Your turn" tasks (the student's function against cases),
               the exercises' verdicts (an answer, a prediction, a design target) and each exercise's check
- parameters   the checks of a notebook's parameters cell, one shared way
- execution    headless runs that never wait forever (a cell timeout, a stalled kernel, one retry)
- saving       a pruned model saved as architecture, plans and weights, and rebuilt
- export       a pruned model written as ONNX and run, timed and compared under onnxruntime
- results, run_course, site, sweep  headline numbers, the main job, its pages to read, parameter sweeps
- gpu_check    `make gpu-check`: the shapes runs and one paper epoch per baseline, timed on a CUDA GPU

Conventions: functions that change a model (`remove_filters`, `mask_filters`, `thin`,
`finetune`, `fit`, `thinet_prune`, `reduce_iteratively`, `reestimate_batch_norm`) work
in place and say so; copy a model first (`copy.deepcopy`) to keep it. Surgery takes
`(model, example_input, plan)`, always in that order.
"""
