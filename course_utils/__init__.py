"""course_utils: what the notebooks of "Pruning papers, reproduced" share.

Read it bottom to top; each layer uses only those below it.

Foundations
- profiles     the run profiles (smoke, shapes, quick, paper) and PROFILE="auto"
- device       the device (CUDA, MPS or CPU), seeding, mixed precision on CUDA
- storage      caches and checkpoints written atomically, checksummed, locked
- data         datasets as tensors on the device (local copies first), a fast batch iterator
- models       the papers' networks at a width multiplier; torchvision's made narrower
- train        fit, evaluate, finetune, the baseline recipe, baselines cached as checkpoints
- uncertainty  intervals: Wilson for accuracies, paired differences, tiers of a ranking
- metrics      parameters, FLOPs, size on disk, measured latency
- text         notebook 09's corpus (Python's own library, as bytes), its small GPT, perplexity

The graph of a model, and surgery on it
- graph        ModelGraph: the model traced once (torch.fx) and walked once; its channel groups,
               where a channel ends, who reads it, the links of a plain chain; passed to all below
- surgery      filters removed (`remove(graph, plan)` returns the next graph) or masked
- chain        links between a conv and the layer that sums its channels, for the oracles
- heads        attention heads removed (`remove_heads`: a smaller HeadAttention) or gated off

Scores and plans
- scores       every criterion, one signature: (model or graph, data) -> one score per filter
- thinet       ThiNet's greedy selection and least-squares scaling (papers 03, 04)
- votes        paper 04's gradient votes
- head_scores  attention heads' and MLP units' importance (paper 08), their magnitude, random
- plans        which filters go: lowest per layer, globally lowest, one score per residual group
- sparsity     one-shot sparsity of Linear layers (paper 09): magnitude, Wanda, SparseGPT, N:M

On top
- reduction    paper 05's loop: score, cut, fine-tune, repeat (one trace for the whole run)
- compression  magnitude pruning and k-means weight sharing (paper 02)
- superclasses paper 01's merge algorithm
- saving, export  a pruned model saved as architecture, plans and weights; ONNX and onnxruntime
- plots, widgets  shared figures and interactive controls
- parameters   the checks of a notebook's parameters cell, one shared way
- grading     judging the learner: a "Your turn" task returns the function the notebook runs on,
               an exercise's check says correct, close or not yet
- claims       what a run shows of the sentences around it (a claim held or did not)

The harness (course_utils.harness): execution, results, run_course, site, sweep, gpu_check:
running notebooks headless and keeping what they found.

Conventions: functions that change a model (`remove`, `remove_filters`, `mask`, `thin`,
`finetune`, `fit`, `thinet_prune`, `reduce_iteratively`, `reestimate_batch_norm`) work in
place and say so; copy a model first (`copy.deepcopy`, or `graph.copy()` for its graph) to
keep it. A graph is built once per model state: `ModelGraph(model, example_input)`, then
passed; `remove_filters(model, example_input, plan)` is the one-cut form that builds it.
"""
