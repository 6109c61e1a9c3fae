import pytest
import torch

from lossbench.models import FeatureTokenizer, PatchEmbedding, TokenEmbedding, TransformerBackbone


def make(adapter, **kw):
    kw.setdefault("d_model", 16)
    kw.setdefault("nhead", 2)
    kw.setdefault("num_layers", 1)
    return TransformerBackbone(adapter, **kw).eval()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sequence_pooling_shapes(pooling):
    assert make(FeatureTokenizer(5, 16), pooling=pooling)(torch.randn(3, 5)).shape == (3, 16)
    assert make(PatchEmbedding((1, 8, 8), 16, patch_size=4), pooling=pooling)(torch.randn(3, 1, 8, 8)).shape == (3, 16)
    assert make(TokenEmbedding(20, 16, 6), pooling=pooling)(torch.randint(1, 20, (3, 6))).shape == (3, 16)


def test_token_level_and_causal():
    net = make(TokenEmbedding(20, 16, 8), pooling="none", causal=True)
    x = torch.randint(1, 20, (2, 8))
    y = net(x)
    assert y.shape == (2, 8, 16)
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] % 19) + 1  # change only the last token
    y2 = net(x2)
    assert torch.allclose(y[:, :-1], y2[:, :-1], atol=1e-6)
    assert not torch.allclose(y[:, -1], y2[:, -1])


def test_non_causal_token_level_sees_the_future():
    net = make(TokenEmbedding(20, 16, 8), pooling="none")
    x = torch.randint(1, 20, (2, 8))
    x2 = x.clone()
    x2[:, -1] = (x2[:, -1] % 19) + 1
    assert not torch.allclose(net(x)[:, 0], net(x2)[:, 0])


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_is_ignored(pooling):
    """What follows the padding id does not change the pooled features."""
    net = make(TokenEmbedding(20, 16, 8, padding_idx=0), pooling=pooling)
    short = torch.tensor([[5, 6, 7, 0, 0, 0, 0, 0]])
    assert torch.allclose(net(short), net(short[:, :3]), atol=1e-5)


def test_seed_gives_identical_weights_and_outputs():
    a = make(FeatureTokenizer(4, 16), seed=3)
    b = make(FeatureTokenizer(4, 16), seed=3)
    c = make(FeatureTokenizer(4, 16), seed=4)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    x = torch.randn(2, 4)
    assert torch.equal(a(x), b(x))


def test_seeded_init_leaves_global_rng_alone():
    # construction draws from the global RNG either way; the seeded reset must draw nothing more
    torch.manual_seed(0)
    make(FeatureTokenizer(4, 16))
    expected = torch.rand(3)
    torch.manual_seed(0)
    make(FeatureTokenizer(4, 16), seed=11)
    assert torch.equal(torch.rand(3), expected)


def test_rows_mode_one_token_per_row():
    emb = PatchEmbedding((1, 8, 8), 16)
    tokens, mask = emb(torch.randn(2, 8, 8))
    assert tokens.shape == (2, 8, 16) and mask is None


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: make(FeatureTokenizer(4, 16), nhead=3), "`nhead`=3 must divide `d_model`=16"),
        (lambda: make(FeatureTokenizer(4, 16), causal=True), "needs pooling='none'"),
        (lambda: make(FeatureTokenizer(4, 16), pooling="max"), "`pooling` must be"),
        (lambda: make(FeatureTokenizer(4, 8)), "tokens of width 8, but `d_model`=16"),
        (lambda: make(FeatureTokenizer(4, 16), activation="tanh"), "`activation`"),
        (lambda: make(FeatureTokenizer(4, 16), dropout=1.0), "`dropout`"),
        (lambda: TokenEmbedding(0, 16, 4), "`vocab_size` must be a positive int, got 0"),
        (lambda: TokenEmbedding(10, 16, 0), "`max_length` must be a positive int, got 0"),
        (lambda: PatchEmbedding((1, 8, 8), 16, patch_size=3), "`patch_size`=3 must divide"),
        (lambda: PatchEmbedding((8, 8), 16), r"`image_shape` must be \(C, H, W\)"),
    ],
)
def test_bad_configuration_is_refused(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize(
    "adapter, bad, match",
    [
        (FeatureTokenizer(4, 16), torch.randn(2, 5), r"\(N, 4\)"),
        (FeatureTokenizer(4, 16), torch.ones(2, 4, dtype=torch.long), "floats"),
        (TokenEmbedding(10, 16, 4), torch.randint(0, 10, (2, 5)), "exceed `max_length`=4"),
        (TokenEmbedding(10, 16, 4), torch.randn(2, 3), "int64 ids"),
        (PatchEmbedding((1, 8, 8), 16), torch.randn(2, 3, 8, 8), r"\(N, 1, 8, 8\)"),
    ],
)
def test_bad_inputs_are_refused(adapter, bad, match):
    with pytest.raises(ValueError, match=match):
        adapter(bad)
