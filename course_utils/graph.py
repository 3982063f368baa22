"""The graph of a model: traced once, walked once, passed to everything that prunes it.

`ModelGraph(model, example_input)` traces the model with torch.fx and follows every
convolution's output channels through the graph: through activations, pooling and
dropout unchanged; into a BatchNorm, the next convolution's input channels, a grouped
convolution with as many outputs as inputs (depthwise or not: it ties output channel i
to input channel i, so a channel is removed from both, and each of its groups must lose
as many channels as the others, or all of theirs), or, after a flatten, a Linear layer's
columns; across `torch.cat` at an offset; across an elementwise add or multiply, which
ties the channels of every producer feeding it into one *coupled group* (a residual
connection); and through `permute`, `transpose` and `movedim` to a channels-last layout,
where a Linear layer acts on the channel axis like a 1x1 convolution (ConvNeXt's blocks:
reader of its input channels, producer of its output channels) and a per-channel
parameter (ConvNeXt's layer scale) is sliced with its channels. In a transformer the
positions become tokens (N x C x H x W reshaped or flattened to N x C x HW, then
transposed), every Linear on tokens produces channels (the MLP's hidden width prunes), and
an attention layer keeps its embedding width: it loses heads instead, which a plan lists
under the layer's name (`attentions`, `resolve_heads`). A group may be pruned
unless its channels reach the network's output, meet an operation surgery does not
understand, pass through a hard-coded reshape, are normalised together by a LayerNorm
(removing a channel would change the others' mean and variance; `slice_layer_norms=True`
prunes them anyway), or become a constant that cannot be folded into the next bias.

The one walk answers every question about a channel: its group (`group_of`), where it ends
(`end`: after the conv's own batch norm, where zeroing it equals removing the filter), who
reads it (`consumers`), and, in a plain chain of layers, the link to the next layer that the
oracles of papers 03 and 04 use (`chain.links`). Scores, plans, surgery and the reduction
loop take the graph; `surgery.remove` returns the pruned model's graph without a new trace,
and `copy()` gives a copy's graph the same way.
"""

from __future__ import annotations

import copy
import math
import numbers

import operator
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.fx
from torch import nn

from .errors import SurgeryError
from .heads import HeadAttention, WindowHeadAttention, attention_heads, check_heads


# ---------------------------------------------------------------- what passes channels through

CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Sigmoid,
    nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Mish,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
)
SPATIAL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_F = nn.functional
try:  # ConvNeXt, EfficientNet: drops whole samples of a residual branch, channels untouched
    from torchvision.ops import stochastic_depth as _stochastic_depth
except ImportError:  # pragma: no cover
    _stochastic_depth = None
CHANNELWISE_FUNCTIONS = {
    torch.relu, torch.relu_, _F.relu, _F.relu6, _F.leaky_relu, _F.elu, _F.gelu, _F.silu,
    _F.hardswish, _F.hardsigmoid, _F.hardtanh, torch.sigmoid, torch.tanh, _F.dropout,
    operator.neg, _stochastic_depth,
}
SPATIAL_FUNCTIONS = {_F.max_pool2d, _F.avg_pool2d, _F.adaptive_avg_pool2d, _F.adaptive_max_pool2d}
MOVING_AXES = {"permute", torch.permute, "transpose", torch.transpose, "movedim", torch.movedim}
CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float",
                       "to", "type_as", "detach"}
# a removed channel passes these unchanged in eval mode (dropout drops nothing at inference)
IDENTITY_AT_INFERENCE = {_F.dropout, _stochastic_depth, "contiguous", "clone", "float", "to", "type_as", "detach"}
JOINING = {operator.add, operator.iadd, operator.mul, operator.imul, operator.sub,
           torch.add, torch.mul, torch.sub, "add", "add_", "mul", "mul_", "sub", "sub_"}
NOT_TENSORS = {"size", "dim"}  # methods whose result carries no channels


@dataclass(frozen=True)
class Segment:
    """A run of `length` consecutive channels produced by one channel source. `zero` is what a
    removed channel of it is at this point of the masked network: 0 after its (zeroed) producer,
    0.5 after a sigmoid, 1 after `+ 1`; None when it differs from channel to channel (a
    per-channel shift). Where a consumer reads a nonzero one, removal equals masking only if
    the constant is folded into the consumer's bias."""

    source: int
    length: int | None
    zero: float | None = 0.0


@dataclass(frozen=True)
class Layout:
    """Where each channel of a tensor comes from, in order.

    `spatial` is None while channels are dimension 1 of an N x C x H x W tensor; after a
    flatten it is the number of features each channel became (H * W), channel-major.
    """

    segments: tuple[Segment, ...]
    spatial: int | None = None
    channel_dim: int = 1  # 1 for N x C x H x W, -1 once permuted to channels-last
    # the last module the channels came out of as N x C x H x W, on a plain chain of modules
    # from their producer (one user each step, a flatten allowed); None once the path branches
    # or passes a function: where the oracles of papers 03 and 04 cut the network
    cut: str | None = None

    @property
    def flattened(self) -> bool:
        return self.spatial is not None

    @property
    def channels_first(self) -> bool:
        return self.channel_dim == 1 and not self.flattened

    def with_zeros(self, zeros) -> Layout:
        """The same channels, a removed channel of segment i now being `zeros[i]`."""
        return replace(self, segments=tuple(replace(s, zero=z) for s, z in zip(self.segments, zeros)))

    def mapped(self, function) -> Layout:
        """The same channels after an elementwise `function` of a removed channel's value."""
        return self.with_zeros([None if s.zero is None else function(s.zero) for s in self.segments])

    @property
    def reset(self) -> Layout:
        """After a layer that masking zeroes too (a batch norm, a depthwise conv): zero again."""
        return self.with_zeros([0.0] * len(self.segments))

    def through(self, module: str) -> Layout:
        """The same channels out of the channel-wise `module` (the chain's cut moves there)."""
        return replace(self, cut=module if self.cut is not None and self.channels_first else self.cut)


@dataclass
class ChannelGroup:
    """Channels that must be removed together: one producer, or all those an add ties."""

    index: int
    convs: list[str]  # every conv (or channels-last Linear) producing these channels, depthwise ones included
    channels: int | None
    prunable: bool
    reason: str | None  # why not, when not prunable
    coupled: bool = False  # an add ties the outputs of several convs (a residual group)
    concatenated: bool = False  # its channels pass through a torch.cat (DenseNet, SqueezeNet)
    # the `groups` of every grouped convolution the channels pass through (ResNeXt, RegNet):
    # each splits them into that many equal blocks, which must lose the same number of channels
    split_by: tuple[int, ...] = ()

    @property
    def blocks(self) -> int:
        """The number of equal blocks a balanced plan cuts alike (1 if none)."""
        return math.lcm(1, *self.split_by)


@dataclass
class Reader:
    """A layer that reads channels: what surgery slices when they go."""

    module: str
    kind: str  # "conv", "grouped", "batchnorm", "layernorm", "linear" (after a flatten),
    #            "channels" (a Linear on the channel axis) or "scale" (a per-channel parameter)
    layout: Layout
    parameter: str | None = None  # for "scale": the parameter's name in `module`
    axis: int = 0  # for "scale": the parameter's channel axis


@dataclass(frozen=True)
class Link:
    """A conv in a plain chain of layers and the next layer that sums its channels."""

    conv: str  # the conv whose filters are scored
    cut: str  # the last module before the consumer: zeroing a channel here removes it
    consumer: str  # the next conv or linear layer, whose output sums the channels
    channels: int  # the conv's filters


@dataclass
class _Source:
    conv: str | None  # the conv producing it, None for the network input
    reasons: list[str] = field(default_factory=list)


class _RecordingTracer(torch.fx.Tracer):
    """A tracer that remembers which module it is inside, to name it when tracing fails."""

    def __init__(self):
        super().__init__()
        self.failed_in: str | None = None  # the innermost module whose forward raised

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, (HeadAttention, WindowHeadAttention)) or super().is_leaf_module(module, qualified_name)

    def call_module(self, module, forward, args, kwargs):
        try:
            return super().call_module(module, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.path_of_module(module)
            raise


def produces_channels(module: nn.Module) -> bool:
    """A layer with filters of its own: a conv with groups=1, or a Linear on the channel axis."""
    return isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.groups == 1)


def scored_convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The convolutions that have filters of their own (groups=1), by qualified name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1}


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """The model's torch.fx graph (sharing the model's modules), or a SurgeryError naming
    the module whose forward cannot be traced."""
    tracer = _RecordingTracer()
    try:
        graph = tracer.trace(model)
    except Exception as error:
        where = tracer.failed_in
        module = model.get_submodule(where) if where else model
        raise SurgeryError(
            f"torch.fx cannot trace {where or 'the model forward'!r} "
            f"({type(module).__name__}): {error}. "
            f"Surgery needs a forward without Python control flow on tensor values; rewrite "
            f"that forward, or prune this model by masking.") from error
    return torch.fx.GraphModule(model, graph)


def split_model(model: nn.Module | ModelGraph, *layers: str):
    """Cut the model after each of `layers` (in forward order): with one layer, `front(x)`
    returns that layer's output and `back(z)` the model's output computed from it, so work
    before the cut can be cached and reused; with more, the pieces in between too.
    Refused when a node reads a tensor from before the previous cut (a skip connection).
    Given the model's `ModelGraph`, it reuses its trace."""
    if not layers:
        raise ValueError("split_model needs at least one layer name to cut after")
    nodes = list(model.module.graph.nodes if isinstance(model, ModelGraph) else trace(model).graph.nodes)
    model = model_of(model)
    cuts = []
    for layer in layers:
        cut = next((n for n in nodes if n.op == "call_module" and n.target == layer), None)
        if cut is None:
            raise SurgeryError(f"no module called {layer!r} is used in the model's forward")
        cuts.append(nodes.index(cut))
    if cuts != sorted(set(cuts)):
        raise SurgeryError(f"cut after {list(layers)} in the order the forward runs them")
    pieces, start = [], 0
    for end in [*cuts, len(nodes) - 1]:
        graph, copied = torch.fx.Graph(), {}
        if start:
            copied[nodes[start - 1]] = graph.placeholder("features")
        for node in nodes[start:end + 1]:
            skipped = [n.name for n in node.all_input_nodes if n not in copied]
            if skipped:
                raise SurgeryError(f"{node.name} reads {skipped}, computed before "
                                   f"{nodes[start - 1].target}: the model cannot be cut there")
            copied[node] = graph.node_copy(node, lambda n: copied[n])
        if nodes[end].op != "output":
            graph.output(copied[nodes[end]])
        pieces.append(torch.fx.GraphModule(model, graph))
        start = end + 1
    return tuple(pieces)


class ModelGraph:
    """The coupled channel groups of a model's convolutions and who consumes them.

    With `example_input`, shapes are propagated (one forward pass in eval mode, no
    gradient, running statistics untouched) so that channel counts and the features each
    channel becomes after a flatten are known; `remove_filters` needs that. Without it,
    the grouping is still found (enough for `mask_filters`).

    Channels that a LayerNorm normalises together are refused, since removing one changes
    how the others are normalised: the pruned network would not compute what the masked
    one does. `slice_layer_norms=True` lets them go anyway, the LayerNorm sliced like a
    batch norm (as Torch-Pruning does): the pruned network is then a new one, to fine-tune.
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor | None = None,
                 slice_layer_norms: bool = False, *, traced: torch.fx.GraphModule | None = None):
        self.model = model
        self.example_input = example_input
        self.slice_layer_norms = slice_layer_norms
        # `traced`: the trace of this architecture from another ModelGraph (of a copy of the
        # model, or of the model before surgery changed its channel counts), its nodes already
        # carrying their shapes: what the walk reads of them (ranks, the spatial size before a
        # flatten) surgery does not change, and channel counts come from the modules themselves
        self.module = trace(model) if traced is None else traced
        self.modules = dict(model.named_modules())
        # the attention layers, by name, with their head counts: a plan may name them with heads
        self.attentions = {name: attention_heads(m) for name, m in self.modules.items() if attention_heads(m)}
        self._tied = _tied_modules(model)
        if example_input is not None and traced is None:
            _propagate_shapes(self.module, model, example_input)
        self._parent: list[int] = []
        self._sources: list[_Source] = []
        self.readers: list[Reader] = []
        self._producer_nodes: dict[str, torch.fx.Node] = {}
        self._conv_segment: dict[str, Segment] = {}
        self._concatenated: set[int] = set()  # channel sources seen entering a torch.cat
        self._split: list[tuple[int, int]] = []  # (channel source, groups) of each grouped pass
        self._walk()
        self.groups = self._collect_groups()
        self._group_of_conv = {conv: group for group in self.groups for conv in group.convs}
        self._group_of_root = {self._find(self._conv_segment[g.convs[0]].source): g.index
                               for g in self.groups}

    def copy(self) -> ModelGraph:
        """The graph of a deep copy of the model (to prune while keeping the original): the same
        trace, walked again over the copy's modules."""
        return ModelGraph(copy.deepcopy(self.model), self.example_input, self.slice_layer_norms, traced=self.module)

    def rebuilt(self) -> ModelGraph:
        """The graph of the model as it is now, after surgery changed its channel counts: the
        same trace, walked again."""
        return ModelGraph(self.model, self.example_input, self.slice_layer_norms, traced=self.module)

    # ---- what the walk found, by conv

    @property
    def convs(self) -> list[str]:
        """The convolutions with filters of their own (groups=1), in the order the forward runs them."""
        return [name for name in self._producer_nodes
                if isinstance(self.modules[name], nn.Conv2d) and self.modules[name].groups == 1]

    def end(self, conv: str) -> str:
        """The module after which zeroing a channel of `conv` equals removing its filter: the
        batch norm that follows the conv alone (its shift would bring a zeroed channel back),
        else the conv itself."""
        self.group_of(conv)
        users = list(self._producer_nodes[conv].users)
        follows_alone = len(users) == 1 and users[0].op == "call_module" and \
            isinstance(self.modules[users[0].target], nn.BatchNorm2d)
        return users[0].target if follows_alone else conv

    def readers_of(self, conv: str) -> list[Reader]:
        """Every layer that reads the channels of `conv`'s group (sliced when they go)."""
        index = self.group_of(conv).index
        return [reader for reader in self.readers
                if any(self._group_of_root.get(self._find(s.source)) == index for s in reader.layout.segments)]

    def consumers(self, conv: str) -> list[str]:
        """The names of the layers that read the channels of `conv` (and of its group)."""
        return list(dict.fromkeys(reader.module for reader in self.readers_of(conv)))

    def link(self, conv: str) -> Link:
        """`conv` in a plain chain of layers: the module after which its channels are final (the
        cut) and the next conv or linear layer that sums them; a SurgeryError where the model
        is not a chain there (a branch, a residual add, a concatenation, a function on the way)."""
        group = self.group_of(conv)
        summing = [r for r in self.readers_of(conv) if r.kind != "batchnorm"]
        if len(group.convs) > 1 or group.concatenated or len(summing) != 1 or \
                summing[0].kind not in ("conv", "linear") or summing[0].layout.cut is None:
            where = ", ".join(r.module for r in summing) or "the network's output"
            raise SurgeryError(f"the channels of {conv} reach {where} through more than a plain chain of "
                               f"layers: oracle criteria here need one conv or linear layer reading them, "
                               f"after channel-wise modules only")
        return Link(conv, summing[0].layout.cut, summing[0].module, group.channels)

    # ---- union-find over channel sources

    def _new_source(self, conv: str | None, reason: str | None = None) -> int:
        self._parent.append(len(self._parent))
        self._sources.append(_Source(conv, [reason] if reason else []))
        return len(self._parent) - 1

    def _find(self, source: int) -> int:
        while self._parent[source] != source:
            self._parent[source] = self._parent[self._parent[source]]
            source = self._parent[source]
        return source

    def _union(self, a: int, b: int) -> None:
        a, b = self._find(a), self._find(b)
        if a != b:
            self._parent[b] = a
            self._sources[a].reasons += self._sources[b].reasons

    def _forbid(self, layouts, reason: str) -> None:
        for layout in layouts:
            for segment in layout.segments:
                root = self._sources[self._find(segment.source)]
                if reason not in root.reasons:
                    root.reasons.append(reason)

    # ---- the walk

    def _walk(self) -> None:
        layouts: dict[torch.fx.Node, Layout] = {}
        uses = Counter(n.target for n in self.module.graph.nodes if n.op == "call_module")
        for node in self.module.graph.nodes:
            inputs = [layouts[n] for n in _input_nodes(node) if n in layouts]
            if node.op == "placeholder":
                source = self._new_source(None, "they are the network's input")
                layouts[node] = Layout((Segment(source, _channels(node)),))
            elif node.op == "output":
                self._forbid(inputs, "they reach the network's output")
            elif node.op in ("call_module", "call_function", "call_method"):
                layout = (self._module_node(node, inputs, uses[node.target] > 1) if node.op == "call_module"
                          else self._function_node(node, layouts, inputs))
                if layout is not None:  # read by several: no longer a plain chain
                    layouts[node] = layout if len(node.users) == 1 else replace(layout, cut=None)
            elif inputs:  # get_attr never carries conv channels; anything else is unknown
                self._forbid(inputs, f"they meet {node.op} {node.target}")

    def _module_node(self, node, inputs, reused: bool) -> Layout | None:
        name, module = node.target, self.modules[node.target]
        layout = inputs[0] if inputs else None
        has_weights = any(True for _ in module.parameters(recurse=False)) or _parametrized(module)
        unsliceable = _unsliceable(name, module, reused, self._tied) if has_weights else None
        if unsliceable and inputs:
            self._forbid(inputs, unsliceable)
        if isinstance(module, nn.Conv2d):
            if layout is not None and not layout.channels_first:
                self._forbid(inputs, f"{name} reads them in a layout surgery does not follow")
                layout = None
            return self._conv_node(node, module, layout, unsliceable)
        if attention_heads(module):
            return self._attention(name, module.embed_dim, inputs)
        if layout is None:
            if isinstance(module, nn.Linear) and len(_shape(node.args[0]) or ()) >= 3:
                return self._linear_on_channels(name, module, None, unsliceable)  # on tokens
            return None
        if isinstance(module, nn.BatchNorm2d) and layout.channels_first:
            self.readers.append(Reader(name, "batchnorm", layout))
            return layout.reset.through(name)  # masking zeroes the norm's scale and shift too
        if isinstance(module, CHANNELWISE_MODULES):
            return layout.mapped(lambda value: _module_value(module, value)).through(name)
        if isinstance(module, SPATIAL_MODULES) and layout.channels_first:
            return layout.mapped(lambda value: _pooled_value(module, value)).through(name)
        if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1 \
                and layout.channel_dim == 1:
            return _flatten(layout, node)
        if isinstance(module, nn.Linear) and layout.flattened:
            self._read_constants(name, layout, exact=True)
            self.readers.append(Reader(name, "linear", layout))
            return None
        if isinstance(module, nn.Linear) and layout.channel_dim == -1:
            return self._linear_on_channels(name, module, layout, unsliceable)
        if isinstance(module, nn.LayerNorm) and layout.channel_dim == -1:
            return self._layer_norm(name, module, layout, inputs)
        self._forbid(inputs, f"they meet {type(module).__name__} {name}, which surgery "
                             f"does not know how to shrink")
        return None

    def _layer_norm(self, name, norm: nn.LayerNorm, layout: Layout, inputs) -> Layout:
        """A LayerNorm over the channel axis: refused, or sliced when asked."""
        if self.slice_layer_norms and len(norm.normalized_shape) == 1:
            self.readers.append(Reader(name, "layernorm", layout))
        else:
            self._forbid(inputs, _normalised_together(name))
        return layout

    def _attention(self, name: str, width: int, inputs) -> Layout:
        """An attention layer (called as a module): its input and output keep the embedding
        width; what it loses is heads, named in a plan by the layer's own name."""
        reason = (f"they pass the attention layer {name}, whose embedding width surgery keeps "
                  f"(remove its heads instead: a plan naming {name!r} lists heads)")
        self._forbid(inputs, reason)
        return Layout((Segment(self._new_source(None, reason), width),), channel_dim=-1)

    def _linear_on_channels(self, name, linear: nn.Linear, layout: Layout | None, unsliceable: str | None):
        """A Linear on the channel axis of a channels-last tensor (a 1x1 convolution), or on a
        tensor of tokens whose channels come from nothing surgery follows (`layout` None)."""
        if layout is not None:
            self._read_constants(name, layout, exact=True)
            self.readers.append(Reader(name, "channels", layout))
        segment = Segment(self._new_source(name, unsliceable), linear.out_features)
        self._conv_segment[name] = segment
        return Layout((segment,), channel_dim=-1)

    def _conv_node(self, node, conv: nn.Conv2d, layout: Layout | None, unsliceable: str | None):
        name = node.target
        self._producer_nodes[name] = node
        if layout is not None and conv.groups == 1:
            # a constant channel is one constant per output where the kernel never meets padding
            # zeros: no padding, or padding that repeats the border (replicate, reflect, circular)
            exact = conv.padding_mode != "zeros" or not any(_pairs(conv.padding))
            self._read_constants(name, layout, exact)
            self.readers.append(Reader(name, "conv", layout))
        depthwise = conv.groups == conv.in_channels == conv.out_channels
        passes = conv.groups > 1 and conv.in_channels == conv.out_channels and layout is not None \
            and not unsliceable and (depthwise or len(layout.segments) == 1)
        if passes:  # output channel i is made from input channel i's group: one channel
            self.readers.append(Reader(name, "grouped", layout))
            if len(layout.segments) == 1:
                self._conv_segment[name] = layout.segments[0]
                if not depthwise:
                    self._split.append((layout.segments[0].source, conv.groups))
            return replace(layout.reset, cut=None)  # masking zeroes the removed channels' filters here too
        reason = None
        if conv.groups > 1:
            reason = (f"{name} is a grouped convolution with {conv.in_channels} inputs and "
                      f"{conv.out_channels} outputs" if conv.in_channels != conv.out_channels
                      else f"{name} is a grouped convolution reading concatenated channels")
            if layout is not None:
                self._forbid([layout], reason)
        segment = Segment(self._new_source(name, unsliceable or reason), conv.out_channels)
        self._conv_segment[name] = segment
        return Layout((segment,), cut=name)

    def _read_constants(self, name: str, layout: Layout, exact: bool) -> None:
        """`name` reads `layout`: a removed channel that is a nonzero constant there is folded
        into `name`'s bias when that is `exact`, and refused otherwise; one that is not a
        constant (None) is refused. Removal then computes what masking computes."""
        for segment in layout.segments:
            if segment.zero == 0.0 or segment.zero is not None and exact:
                continue
            if segment.zero is None:
                reason = (f"a removed channel would not be zero where {name} reads it (it meets a "
                          f"per-channel shift on the way), so removing it would not compute what masking does")
            else:
                reason = (f"a removed channel is the constant {segment.zero:g} where {name} reads it (after a "
                          f"sigmoid or a shift), and {name} pads with zeros: at the borders removing it would "
                          f"not compute what masking does")
            self._forbid([Layout((segment,))], reason)

    def _function_node(self, node, layouts, inputs) -> Layout | None:
        layout = self._function_layout(node, layouts, inputs)
        if layout is None or node.target in (torch.flatten, "flatten"):
            return layout  # a flatten keeps a plain chain (its cut stays before it)
        return replace(layout, cut=None)  # any other function ends one

    def _function_layout(self, node, layouts, inputs) -> Layout | None:
        target = node.target
        if not inputs or target in NOT_TENSORS or target is getattr:
            return None
        first = layouts.get(node.args[0]) if node.args else None
        if target in CHANNELWISE_FUNCTIONS or target in CHANNELWISE_METHODS:
            if first is not None and len(inputs) == 1:
                return first if target in IDENTITY_AT_INFERENCE else \
                    first.mapped(lambda value: _node_value(node, {node.args[0]: value}))
        elif target in SPATIAL_FUNCTIONS and first is not None and first.channels_first:
            if len(inputs) == 1:  # an average may pad with zeros: a nonzero constant is one no more
                return first.mapped(lambda value: value if value == 0 or target is not _F.avg_pool2d else None)
        elif target in JOINING:
            return self._join(node, layouts, inputs)
        elif target is torch.cat:
            return self._concatenate(node, layouts)
        elif target is operator.getitem and first is not None and self._keeps_channels(node, first):
            return first
        elif target in MOVING_AXES:
            return self._move_axes(node, first, inputs)
        elif target is _F.layer_norm and first is not None and first.channel_dim == -1:
            weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
            owner = weight.target.rpartition(".")[0] if isinstance(weight, torch.fx.Node) \
                and weight.op == "get_attr" else None  # LayerNorm2d calls F.layer_norm itself
            if owner is not None and isinstance(self.modules[owner], nn.LayerNorm):
                return self._layer_norm(owner, self.modules[owner], first, inputs)
            self._forbid(inputs, _normalised_together(_owner(node) or _describe(node)))
            return first
        elif target in (torch.flatten, "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            if first is not None and first.channel_dim == 1 and start == 1 and end == -1:
                return _flatten(first, node)
            if first is not None and first.channels_first and start == 2 and end == -1:
                return replace(first, cut=None)  # N x C x (H W): the positions become tokens
        elif target in ("view", "reshape", torch.reshape):
            if first is None or first.channel_dim == 1:
                return self._reshape(node, first, inputs)
        elif target in ("mean", torch.mean, "sum", torch.sum, "amax", torch.amax):
            reduced = _spatial_reduction(node, first)
            if reduced is not None:
                return reduced
        self._forbid(inputs, f"they meet {_describe(node)}, which surgery does not "
                             f"understand")
        return None

    def _keeps_channels(self, node, first: Layout) -> bool:
        """`x[index]` keeps every channel in place: the output of an attention layer (its first
        item), or tokens picked from a channels-last tensor (ViT's class token, `x[:, 0]`)."""
        source, index = node.args[0], node.args[1]
        if source.op == "call_module" and attention_heads(self.modules[source.target]):
            return index == 0
        rank = len(_shape(source) or ())
        return first.channel_dim == -1 and isinstance(index, tuple) and len(index) < rank and \
            all(isinstance(i, (int, slice)) for i in index)

    def _join(self, node, layouts, inputs) -> Layout | None:
        operands = _input_nodes(node)
        others = [n for n in operands if n not in layouts]
        if others:
            if len(inputs) == 1 and all(self._channel_parameter(n, node, inputs[0]) for n in others):
                # a per-channel scale or shift (ConvNeXt's layer scale)
                return inputs[0].with_zeros(_joined_zeros(node, layouts))
            self._forbid(inputs, f"{_describe(node)} combines them with a tensor that is "
                                 f"not a convolution's output")
            # the channels stay where they were (what they hold is no longer known): whatever
            # reads or joins them later is tied to this refusal
            return inputs[0].with_zeros([None] * len(inputs[0].segments)) if len(inputs) == 1 else None
        first = inputs[0]
        for other in inputs[1:]:
            lengths = [s.length for s in first.segments]
            if (lengths != [s.length for s in other.segments] or first.spatial != other.spatial
                    or first.channel_dim != other.channel_dim):
                self._forbid(inputs, f"{_describe(node)} adds tensors concatenated differently")
                return None
            for a, b in zip(first.segments, other.segments):
                self._union(a.source, b.source)
        return first.with_zeros(_joined_zeros(node, layouts))

    def _channel_parameter(self, parameter: torch.fx.Node, node, layout: Layout) -> bool:
        """Record `parameter` as a consumer sliced with the channels when it holds one value
        per channel along the channel axis (every other axis of size one)."""
        if parameter.op != "get_attr" or layout.flattened:
            return False
        owner, _, name = parameter.target.rpartition(".")
        tensor = getattr(self.modules[owner], name, None)
        if not torch.is_tensor(tensor) or tensor.dim() == 0:
            return False
        rank = len(_shape(node) or (0, 0, 0, 0))
        axis = (layout.channel_dim % rank) - (rank - tensor.dim())
        channels = sum(s.length or 0 for s in layout.segments)
        if not 0 <= axis < tensor.dim() or any(size != 1 for i, size in enumerate(tensor.shape)
                                              if i != axis):
            return False
        if channels and tensor.shape[axis] != channels:
            return False
        self.readers.append(Reader(owner, "scale", layout, parameter=name, axis=axis))
        return True

    def _move_axes(self, node, first: Layout | None, inputs) -> Layout | None:
        """permute, transpose, movedim: follow where the channel axis goes."""
        if first is None or first.flattened:
            self._forbid(inputs, f"they meet {_describe(node)} after a flatten")
            return None
        rank = len(_shape(node) or (0, 0, 0, 0))
        old = first.channel_dim % rank
        args = list(node.args[1:])
        if node.target in ("permute", torch.permute):
            dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else \
                args or node.kwargs.get("dims")
            order = [d % rank for d in dims]
        elif node.target in ("transpose", torch.transpose):
            a, b = (d % rank for d in (args or [node.kwargs["dim0"], node.kwargs["dim1"]]))
            order = list(range(rank))
            order[a], order[b] = b, a
        else:  # movedim, one axis
            source, destination = (d % rank for d in args[:2])
            order = [d for d in range(rank) if d != source]
            order.insert(destination, source)
        new = order.index(old)
        if new in (1, rank - 1):
            return replace(first, channel_dim=1 if new == 1 else -1)
        self._forbid(inputs, f"{_describe(node)} moves the channels to axis {new}, where "
                             f"surgery does not follow them")
        return None

    def _concatenate(self, node, layouts) -> Layout | None:
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        part_layouts = [layouts.get(p) for p in parts]
        known = [p for p in part_layouts if p is not None]
        rank = len(_shape(node) or (0, 0, 0, 0))
        if dim in (1, 1 - rank) and len(known) == len(parts) and all(
                p.channels_first for p in known):
            self._concatenated |= {s.source for p in known for s in p.segments}
            return Layout(tuple(s for p in known for s in p.segments))
        if len(known) == 1 and known[0].channel_dim == -1 and dim % rank != rank - 1:
            # tokens joined (ViT's class token): the channels stay, tied to what joins them
            self._forbid(known, f"{_describe(node)} joins them with tokens that are not a layer's output")
            return known[0].with_zeros([None] * len(known[0].segments))
        self._forbid(known, f"{_describe(node)} concatenates them in a way surgery does not "
                            f"follow")
        return None

    def _reshape(self, node, first, inputs) -> Layout | None:
        dims = node.args[1:]
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if first is not None and len(dims) == 2 and dims[1] == -1:
            return _flatten(first, node)
        shape, before = _shape(node), _shape(node.args[0])
        if first is not None and first.channels_first and shape and before and len(shape) == 3 \
                and len(before) == 4 and shape[1] == before[1]:
            return replace(first, cut=None)  # N x C x (H W): the positions become tokens
        if first is not None and len(dims) == 2 and isinstance(dims[1], int):
            self._forbid(inputs, f"the forward hard-codes the flattened size in "
                                 f"{node.target}(..., {dims[1]}); write x.flatten(1) or "
                                 f"x.view(x.size(0), -1) instead so the layer can be reduced "
                                 f"(paper 05, Figure 2)")
            return None
        self._forbid(inputs, f"they meet {_describe(node)}, a reshape surgery does not follow")
        return None

    # ---- results

    def _collect_groups(self) -> list[ChannelGroup]:
        members: dict[int, list[str]] = defaultdict(list)
        order: list[int] = []
        for name, segment in self._conv_segment.items():
            root = self._find(segment.source)
            if root not in members:
                order.append(root)
            members[root].append(name)
        concatenated = {self._find(source) for source in self._concatenated}
        split_by = defaultdict(set)
        for source, groups in self._split:
            split_by[self._find(source)].add(groups)
        groups = []
        for index, root in enumerate(order):
            reasons = self._sources[root].reasons
            lengths = {self._conv_segment[name].length for name in members[root]}
            producers = [name for name in members[root] if produces_channels(self.modules[name])]
            groups.append(ChannelGroup(index, members[root], lengths.pop() if len(lengths) == 1
                                       else None, not reasons,
                                       "; ".join(reasons) if reasons else None,
                                       coupled=len(producers) > 1,
                                       concatenated=root in concatenated,
                                       split_by=tuple(sorted(split_by[root]))))
        return groups

    def group_of(self, conv: str) -> ChannelGroup:
        """The coupled group whose channels are the output channels of `conv`."""
        if conv not in self._group_of_conv:
            convs = [c for g in self.groups if g.prunable for c in g.convs]
            hint = ", ".join(convs[:6]) + (", ..." if len(convs) > 6 else "")
            heads = f"; attention layers (a plan lists their heads): {', '.join(list(self.attentions)[:3])}" \
                + (", ..." if len(self.attentions) > 3 else "") if self.attentions else ""
            raise SurgeryError(f"no convolution named {conv!r} in this model; prunable ones "
                               f"are: {hint or 'none'}{heads}")
        return self._group_of_conv[conv]

    def prunable_convs(self) -> list[str]:
        """One representative conv per prunable group (its first member)."""
        return [group.convs[0] for group in self.groups if group.prunable]

    def reducible(self, residual_groups: bool = False) -> list[str]:
        """The convs paper 05 reduces: prunable, alone in their group (no residual add) and
        not concatenated. With `residual_groups`, also one representative per residual group
        (its members are then cut together, which the paper leaves out)."""
        return [group.convs[0] for group in self.groups
                if group.prunable and not group.concatenated
                and (residual_groups or not group.coupled)]

    def resolve(self, plan: Mapping[str, Sequence[int]]) -> dict[int, list[int]]:
        """Check a plan and turn it into the sorted channel indices to remove per group.

        The members of a coupled group (a residual add) lose the same channels, so a plan
        that names several members of one group must name the same channels for each:
        merging different choices would remove their union, far more than any member asked
        for. Such a plan is refused; `plans.group_scores` scores each group once, so that
        `lowest(group_scores(...), share)` cuts every group's share exactly once."""
        if not isinstance(plan, Mapping):
            raise SurgeryError(f"a plan maps each conv's name to the indices of the filters to remove, "
                               f"such as {{'features.0': [3, 7]}}; got {type(plan).__name__} {plan!r:.60}")
        removed: dict[int, set[int]] = defaultdict(set)
        named_by: dict[int, str] = {}
        self.resolve_heads(plan)
        for conv, indices in plan.items():
            if conv in self.attentions:
                continue
            if not isinstance(conv, str):
                raise SurgeryError(f"a plan's keys are conv names (strings); got {conv!r}")
            if isinstance(indices, (str, bytes, Mapping)) or not hasattr(indices, "__iter__"):
                raise SurgeryError(f"the plan for {conv} must list filter indices; got {type(indices).__name__}")
            group = self.group_of(conv)
            if torch.is_tensor(indices) and indices.dtype == torch.bool:
                raise SurgeryError(f"the plan for {conv} is a boolean mask; give the indices of the "
                                   f"filters to remove (mask.nonzero().flatten())")
            indices = indices.tolist() if torch.is_tensor(indices) else list(indices)
            wrong = [i for i in indices if isinstance(i, bool) or not isinstance(i, numbers.Integral)]
            if wrong:
                raise SurgeryError(f"the plan for {conv} must list whole filter indices; it has {wrong}")
            indices = [int(i) for i in indices]
            if not indices:
                continue
            if not group.prunable:
                raise SurgeryError(f"the filters of {conv} cannot be removed: {group.reason}")
            if len(set(indices)) != len(indices):
                raise SurgeryError(f"the plan for {conv} repeats a channel index: {indices}")
            if group.channels is None:
                raise SurgeryError(f"the channel count of {conv} is unknown; build the graph "
                                   f"with an example input")
            bad = [i for i in indices if not 0 <= i < group.channels]
            if bad:
                raise SurgeryError(f"{conv} has {group.channels} filters (0 to "
                                   f"{group.channels - 1}); the plan names {bad}")
            if group.index in named_by and removed[group.index] != set(indices):
                raise SurgeryError(
                    f"the plan names {named_by[group.index]} and {conv}, members of one residual "
                    f"group, with different channels; removing both choices would remove their "
                    f"union. Plan each group once: lowest(plans.group_scores(graph, scores), share), "
                    f"or name one member per group")
            named_by[group.index] = conv
            removed[group.index] |= set(indices)
        for index, channels in removed.items():
            group = self.groups[index]
            if len(channels) >= group.channels:
                raise SurgeryError(f"the plan removes every filter of {group.convs[0]}; keep at "
                                   f"least one (to drop a whole layer, change the model)")
            for groups in group.split_by:
                _check_balanced(group, sorted(channels), groups)
        return {index: sorted(channels) for index, channels in removed.items()}

    def resolve_heads(self, plan: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        """The heads a plan removes, by attention layer (the plan's keys that name one), each
        list checked (`heads.check_heads`) and sorted; layers with no heads named are left out."""
        found = {}
        for name, heads in plan.items():
            if name in self.attentions:
                heads = heads.tolist() if torch.is_tensor(heads) else list(heads)
                if heads:
                    found[name] = check_heads(self.modules[name], heads)
        return found

    def positions(self, layout: Layout, removed: dict[int, list[int]]) -> list[int]:
        """Indices along a consumer's input channels that the removal deletes."""
        return [position for position, _ in self._removed_inputs(layout, removed)]

    def constants(self, layout: Layout, removed: dict[int, list[int]]) -> dict[int, float]:
        """{input position: its constant} for the deleted input channels that are not zero where
        the consumer reads them (after a sigmoid, `+ 1`): what folding into its bias keeps."""
        return {position: zero for position, zero in self._removed_inputs(layout, removed) if zero}

    def _removed_inputs(self, layout: Layout, removed: dict[int, list[int]]) -> list[tuple[int, float | None]]:
        found, offset = [], 0
        for segment in layout.segments:
            index = self._group_of_root.get(self._find(segment.source))
            if index in removed:
                if segment.length is None:
                    raise SurgeryError("channel offsets unknown; build the graph with an example input")
                found += zip([offset + i for i in removed[index]] if offset else removed[index],
                             [segment.zero] * len(removed[index]))
            offset += segment.length or 0
        return found

    def summary(self):
        """A DataFrame of the groups: members, channels, prunable, and why not."""
        import pandas as pd

        return pd.DataFrame([dict(group=g.index, convs=", ".join(g.convs), channels=g.channels,
                                  prunable=g.prunable, residual=g.coupled,
                                  concatenated=g.concatenated, reason=g.reason or "")
                             for g in self.groups]).set_index("group")


def as_graph(model: nn.Module | ModelGraph, example_input: torch.Tensor | None = None) -> ModelGraph:
    """A model's graph: the one given, or traced now. Functions that read the graph take
    either, so a notebook can pass a model once and a loop its graph (no trace per call)."""
    return model if isinstance(model, ModelGraph) else ModelGraph(model, example_input)


def model_of(model: nn.Module | ModelGraph) -> nn.Module:
    """The model itself, whether given bare or with its graph."""
    return model.model if isinstance(model, ModelGraph) else model


def _check_balanced(group: ChannelGroup, channels: list[int], groups: int) -> None:
    """A grouped convolution keeps equal groups: each loses the same number of channels,
    except groups that lose all of theirs (they disappear)."""
    size = group.channels // groups
    lost = Counter(channel // size for channel in channels)
    partly = {lost[block] for block in range(groups) if lost[block] < size}
    if len(partly) > 1:
        raise SurgeryError(
            f"{group.convs[0]}'s channels pass through a convolution of {groups} groups of {size}; "
            f"the plan removes {sorted(partly)} channels from different groups, but every group must "
            f"lose as many as the others (or all of its own). Plan it with plans.lowest(scores, "
            f"share, graph=graph), which balances the groups")


# ---------------------------------------------------------------- helpers of the walk


def _node_value(node: torch.fx.Node, values: dict) -> float | None:
    """The node's result when each operand in `values` is that constant everywhere: what a
    removed channel becomes through it. None when that depends on another tensor (a
    per-channel parameter: tried at two stand-in values), is not a finite number, or when an
    operand is already None."""
    if any(value is None for value in values.values()):
        return None
    results = set()
    for stand_in in (1.0, 2.0):
        def operand(n):
            return torch.tensor([values.get(n, stand_in)], dtype=torch.float64)
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), operand)
        try:
            with torch.no_grad():
                result = (getattr(args[0], node.target)(*args[1:], **kwargs) if node.op == "call_method"
                          else node.target(*args, **kwargs))
        except Exception:  # noqa: BLE001 (an operation that cannot run on a stand-in: unknown)
            return None
        if not torch.is_tensor(result) or result.numel() != 1:
            return None
        results.add(float(result))
    value = results.pop() if len(results) == 1 else None
    return value if value is not None and math.isfinite(value) else None


def _joined_zeros(node: torch.fx.Node, layouts: dict) -> list[float | None]:
    """What a removed channel becomes through an add or a multiply (a constant such as `+ 1`
    included), segment by segment of operands that share one layout."""
    tensors = [n for n in _input_nodes(node) if n in layouts]
    return [_node_value(node, {n: layouts[n].segments[i].zero for n in tensors})
            for i in range(len(layouts[tensors[0]].segments))]


def _module_value(module: nn.Module, value: float) -> float | None:
    """What a channel-wise module makes of a channel that is `value` everywhere (in eval mode)."""
    if isinstance(module, (nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity)):
        return value
    if any(True for _ in module.parameters()):  # PReLU's slopes: zero stays zero, others vary
        return 0.0 if value == 0 else None
    with torch.no_grad():
        result = float(module(torch.tensor([value], dtype=torch.float64)))
    return result if math.isfinite(result) else None


def _pooled_value(pool: nn.Module, value: float) -> float | None:
    """A constant channel after pooling: the same constant, unless an average counts padding zeros."""
    pads = isinstance(pool, nn.AvgPool2d) and pool.count_include_pad and any(_pairs(pool.padding))
    return None if pads and value != 0 else value


def _pairs(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _parametrized(module: nn.Module) -> bool:
    """Whether a weight of `module` is computed (torch.nn.utils.parametrize, or the older
    weight_norm and spectral_norm hooks) rather than stored."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    return parametrize.is_parametrized(module) or any(
        isinstance(hook, (WeightNorm, SpectralNorm)) for hook in module._forward_pre_hooks.values())


def _unsliceable(name: str, module: nn.Module, reused: bool, tied: dict[str, list[str]]) -> str | None:
    """Why the weights of `name` cannot be sliced alone, or None."""
    if reused:
        return f"module {name} is called more than once"
    if name in tied:
        return (f"a parameter of {name} is tied to {', '.join(tied[name])} (the same tensor): "
                f"slicing one would untie them")
    if _parametrized(module):
        return (f"the weight of {name} is parametrized (weight_norm, spectral_norm): slicing it would leave "
                f"the tensors it is computed from unchanged; remove the parametrization first "
                f"(torch.nn.utils.parametrize.remove_parametrizations({name}, 'weight')) or prune by masking")
    return None


def _tied_modules(model: nn.Module) -> dict[str, list[str]]:
    """{module: the other modules sharing one of its parameters}, for every module that shares."""
    owners: dict[int, set[str]] = defaultdict(set)
    for name, module in model.named_modules(remove_duplicate=False):
        for parameter in module.parameters(recurse=False):
            owners[id(parameter)].add(name)
    tied: dict[str, set[str]] = defaultdict(set)
    for names in owners.values():
        for name in names:
            tied[name] |= names - {name}
    return {name: sorted(others) for name, others in tied.items() if others}


def _input_nodes(node: torch.fx.Node) -> list[torch.fx.Node]:
    found: list[torch.fx.Node] = []
    torch.fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
    return found


def _shape(node: torch.fx.Node):
    return node.meta.get("shape")


class _ShapeRecorder(torch.fx.Interpreter):
    """Runs the traced graph once and keeps each tensor result's shape in node.meta["shape"]
    (all the walk needs; lighter than torch.fx's ShapeProp, which records strides and more)."""

    def run_node(self, node):
        result = super().run_node(node)
        if torch.is_tensor(result):
            node.meta["shape"] = tuple(result.shape)
        return result


def _channels(node: torch.fx.Node) -> int | None:
    shape = _shape(node)
    return shape[1] if shape is not None and len(shape) > 1 else None


def _flatten(layout: Layout, node: torch.fx.Node) -> Layout:
    if layout.flattened:
        return layout
    shape = _shape(node.args[0]) if node.args and isinstance(node.args[0], torch.fx.Node) \
        else None
    spatial = 1
    for size in (shape or (0, 0, -1))[2:]:
        spatial *= size
    return replace(layout, spatial=spatial if shape is not None else -1)


def _spatial_reduction(node: torch.fx.Node, layout: Layout | None) -> Layout | None:
    """x.mean((2, 3)) and its kin: channels survive; without keepdim they become features."""
    if layout is None or not layout.channels_first:
        return None
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    if {d % 4 for d in dims} != {2, 3}:
        return None
    return layout if keepdim else Layout(layout.segments, 1)


def _owner(node: torch.fx.Node) -> str | None:
    """The innermost module whose forward made this node (recorded by torch.fx)."""
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack), None) if stack else None


def _normalised_together(where: str) -> str:
    return (f"they are normalised together by the LayerNorm {where}: removing a channel would "
            f"change the others' mean and variance, so the pruned network would not compute "
            f"what the masked one does (slice_layer_norms=True prunes them anyway)")


def _describe(node: torch.fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(
        node.target, "__name__", str(node.target))
    return f"{target} ({node.name})"


def _propagate_shapes(graph_module, model, example_input) -> None:
    """Record every node's shape, from a batch of no images where the model accepts one (the
    shapes without the arithmetic: 4x faster on ResNet-50), else from one image."""
    training = {name: m.training for name, m in model.named_modules()}
    model.eval()
    try:
        with torch.no_grad():
            try:
                _ShapeRecorder(graph_module).run(example_input[:0])
            except Exception:  # noqa: BLE001 (x.view(x.size(0), -1) cannot infer -1 for no images)
                _ShapeRecorder(graph_module).run(example_input[:1])
    except Exception as error:
        raise SurgeryError(f"the example input of shape {tuple(example_input.shape)} does not "
                           f"run through the model: {error}") from error
    finally:
        for name, m in model.named_modules():
            m.train(training[name])
