"""The model API refuses what it cannot honour (issue 35, item 6): backbone stage indices by one rule
(type, range, duplicates, order, pruned depth), ``reset_classifier`` checked before it changes
anything, and wrong argument types as one ``UsageError`` line naming the argument, never a raw
TypeError from inside torch (or a truthy string taken as True).

The shared code is checked on a quarter-width googlenet_small at 32 px; every registered model gets
the cheap check (its flags are known, a bad flag or flag type is refused before building)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import ALL_MODELS, SMALL_MODELS
from inceptionnet import create_model
from inceptionnet.errors import UsageError
from inceptionnet.models._features import FeatureGetterNet, FeatureListNet, feature_take_indices

X = torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def small() -> nn.Module:
    """One quarter-width googlenet_small for the checks that leave it unchanged."""
    return create_model("googlenet_small", width=0.25).eval()


def _one_line(e: pytest.ExceptionInfo[UsageError], *needles: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# --------------------------------------------------------------------------------------------------
# Stage indices: one rule for every entry point


ORDER_CASES = [((3, 1), "[1, 3]"), ((1, 1), "[1]"), ((-1, 0), "[0, 4]"), ([0, 2, 2], "[0, 2]")]


@pytest.mark.parametrize(("indices", "fix"), ORDER_CASES)
def test_out_of_order_or_repeated_out_indices_refused(indices, fix):
    # before: (3, 1) built an extractor whose maps came in stage order while feature_info said (3, 1)
    with pytest.raises(UsageError) as e:
        create_model("googlenet_small", width=0.25, features_only=True, out_indices=indices)
    _one_line(e, "out_indices", f"pass {fix}")


@pytest.mark.parametrize(("indices", "fix"), ORDER_CASES)
def test_out_of_order_or_repeated_indices_refused_by_forward_intermediates_and_prune(small, indices, fix):
    with pytest.raises(UsageError) as e:
        small.forward_intermediates(X, indices=list(indices))
    _one_line(e, "forward_intermediates", "indices", f"pass {fix}")
    with pytest.raises(UsageError) as e:
        small.prune_intermediate_layers(list(indices))  # refused before anything is pruned
    _one_line(e, "prune_intermediate_layers", f"pass {fix}")
    assert len(small.feature_info) == 5 and small.num_classes == 1000


BAD_INDICES = ["12", 2.0, (1.0,), (True,), [None], True, {1, 3}, [0, "1"], object()]


@pytest.mark.parametrize("indices", BAD_INDICES, ids=lambda v: "object" if type(v) is object else repr(v))
def test_indices_of_the_wrong_type_refused_everywhere(small, indices):
    # before: TypeErrors ('<' not supported, 'float' object is not iterable), or (True,) and {1, 3}
    # taken as stage 1 / as an unordered set
    with pytest.raises(UsageError) as e:
        create_model("googlenet_small", width=0.25, features_only=True, out_indices=indices)
    _one_line(e, "out_indices")
    with pytest.raises(UsageError) as e:
        small.forward_intermediates(X, indices=indices)
    _one_line(e, "indices")
    with pytest.raises(UsageError):
        small.prune_intermediate_layers(indices)
    with pytest.raises(UsageError):
        FeatureListNet(small, out_indices=indices)


def test_index_rule_bounds_the_work_of_a_huge_list():
    with pytest.raises(UsageError) as e:
        feature_take_indices(5, range(10**12))
    _one_line(e, "lists 1,000,000,000,000 stages", "has 5")


def test_extractor_maps_match_feature_info_for_every_accepted_form(small):
    for indices in (None, 2, [1, -1], range(2, 5), (0,)):
        body = create_model("googlenet_small", width=0.25, features_only=True, out_indices=indices).eval()
        with torch.no_grad():
            maps = body(X)
        take, _ = feature_take_indices(5, indices)
        assert list(body.feature_info.out_indices) == take
        assert [m.shape[1] for m in maps] == body.feature_info.channels()
    with pytest.raises(UsageError) as e:  # timm would take (4, 2) and return the maps as (2, 4)
        FeatureGetterNet(create_model("googlenet_small", width=0.25), out_indices=(4, 2))
    _one_line(e, "out_indices", "pass [2, 4]")


def test_pruned_model_refuses_indices_past_its_last_stage():
    m = create_model("googlenet_small", width=0.25).eval()
    with torch.no_grad():
        want = m.forward_intermediates(X, indices=[0, 1], intermediates_only=True)
        assert m.prune_intermediate_layers([1]) == [1]
        # before: indices=[3] returned stage 1's map (the cut stages are Identity)
        with pytest.raises(UsageError) as e:
            m.forward_intermediates(X, indices=[3])
        _one_line(e, "forward_intermediates", "out of range", "2 feature stages")
        with pytest.raises(UsageError):
            m.forward_intermediates(X, indices=3)  # the last 3 of 2
        with pytest.raises(UsageError):
            m.prune_intermediate_layers([3])
        got = m.forward_intermediates(X, intermediates_only=True)  # None: the stages it has
        last = m.forward_intermediates(X, indices=[-1], intermediates_only=True)
    assert len(m.feature_info) == 2 and m.feature_info[-1]["num_chs"] == m.num_features
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, want))
    assert torch.equal(last[0], want[1])


# --------------------------------------------------------------------------------------------------
# reset_classifier: everything checked before anything changes


def _snapshot(m: nn.Module) -> tuple[object, ...]:
    return (
        m.num_classes, m.global_pool_type, dict(m.default_cfg), m.get_classifier(), m.avgpool,
        m.aux1.fc2, {k: tuple(v.shape) for k, v in m.state_dict().items()},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("num_classes", "pool", "needle"),
    [
        (-1, None, "num_classes"),
        (2.5, None, "num_classes"),
        (True, None, "num_classes"),
        ("3", None, "num_classes"),
        (None, None, "num_classes"),
        (3, 5, "global_pool must be a string"),
        (3, ["avg"], "global_pool must be a string"),
    ],
    ids=repr,
)
def test_reset_classifier_refusals_leave_the_model_unchanged(num_classes, pool, needle):
    # before: -1 was accepted; 2.5 and True failed inside nn.Linear after the pool was replaced and
    # num_classes set (the model left half-changed)
    m = create_model("googlenet_small", width=0.25, num_classes=7, aux_logits=True)
    before = _snapshot(m)
    with pytest.raises(UsageError) as e:
        m.reset_classifier(num_classes, pool)
    _one_line(e, needle)
    after = _snapshot(m)
    assert after[:2] == before[:2] and after[2] == before[2] and after[6] == before[6]
    assert all(a is b for a, b in zip(after[3:6], before[3:6]))


def test_reset_classifier_that_fails_to_allocate_is_undone(monkeypatch):
    m = create_model("googlenet_small", width=0.25, num_classes=7, aux_logits=True)
    before = _snapshot(m)

    def half_way(num_classes: int) -> None:
        m.fc = nn.Identity()  # the main head replaced, then the aux head cannot be allocated
        m.aux1.fc2 = nn.Identity()
        raise RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(m, "_reset_heads", half_way)
    with pytest.raises(UsageError) as e:
        m.reset_classifier(10**9)
    _one_line(e, "reset_classifier", "cannot allocate")
    after = _snapshot(m)
    assert after[:3] == before[:3] and after[6] == before[6]
    assert all(a is b for a, b in zip(after[3:6], before[3:6]))


# --------------------------------------------------------------------------------------------------
# Wrong types at the public entry points


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"foo": 1}, "has no flag 'foo'"),
        ({"pretrained": True}, "has no flag 'pretrained'"),
        ({"aux_logit": True}, "did you mean aux_logits"),
        ({"aux_logits": "yes"}, "aux_logits must be True or False"),
        ({"transform_input": 1}, "transform_input must be True or False"),
        ({"stem_stride": "2"}, "stem_stride must be an integer"),
        ({"act": 3}, "act must be a string"),
        ({"features_only": "no"}, "features_only must be True or False"),
        ({"new_head_ok": "no"}, "new_head_ok must be True or False"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_create_model_refuses_unknown_flags_and_wrong_types(kwargs, needle):
    # before: TypeError "unexpected keyword argument", or "yes" / 1 / "no" taken as True
    with pytest.raises(UsageError) as e:
        create_model("googlenet_small", width=0.25, **kwargs)
    _one_line(e, needle)


def test_method_flags_refuse_wrong_types(small):
    # before: bool("no") is True: set_grad_checkpointing("no") turned checkpointing on
    cases = [
        (lambda: small.set_grad_checkpointing("no"), "set_grad_checkpointing(enable)"),
        (lambda: small.forward_intermediates(X, stop_early="yes"), "stop_early"),
        (lambda: small.forward_intermediates(X, intermediates_only=1), "intermediates_only"),
        (lambda: small(X, return_aux="no"), "return_aux"),
        (lambda: small.prune_intermediate_layers(4, prune_head="no"), "prune_head"),
    ]
    for call, needle in cases:
        with pytest.raises(UsageError) as e:
            call()
        _one_line(e, needle)
    assert small.grad_checkpointing is False and small.num_classes == 1000
    body = create_model("googlenet_small", width=0.25, features_only=True)
    with pytest.raises(UsageError):
        body.set_grad_checkpointing("no")
    with pytest.raises(UsageError):
        FeatureGetterNet(create_model("googlenet_small", width=0.25), return_dict="yes")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_checks_its_flags_before_building(name):
    from inceptionnet.models._registry import builder_flags

    flags = builder_flags(name)
    assert flags is not None and {"num_classes", "in_chans", "global_pool"} <= set(flags)
    with pytest.raises(UsageError) as e:  # refused before anything is built
        create_model(name, not_a_flag=1)
    _one_line(e, name, "not_a_flag")
    with pytest.raises(UsageError) as e:
        create_model(name, global_pool=["avg"])
    _one_line(e, "global_pool must be a string")


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_stage_indices_are_bounded_by_each_models_stages(name):
    # the rule's code is shared; the count is each model's declaration (checked against timm's in
    # test_backbone), so the quarter-width GoogLeNets stand for the family here
    m = create_model(name, num_classes=0, width=0.25)
    x = torch.empty(1, m.in_chans, m.min_input_size, m.min_input_size)
    n = len(m.feature_info)
    for bad in ([n], [-n - 1], n + 1, [n - 1, 0]):
        with pytest.raises(UsageError):
            m.forward_intermediates(x, indices=bad)
        with pytest.raises(UsageError):
            create_model(name, width=0.25, features_only=True, out_indices=bad)
