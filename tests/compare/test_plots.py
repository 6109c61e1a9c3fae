import numpy as np

from lossbench.compare.report.plots import plot_grad_norm, plot_target, plot_train_loss, render_plots, seed_curve
from tests.compare.fake import make_record, make_rows

PNG = b"\x89PNG\r\n\x1a\n"


def test_seed_curve_interpolates_on_the_union_of_steps():
    steps, mean, low, high = seed_curve([{0: 0.0, 20: 2.0}, {0: 1.0, 10: 2.0, 20: 3.0}, {}])
    assert steps.tolist() == [0, 10, 20]
    assert np.allclose(mean, [0.5, 1.5, 2.5]) and np.allclose(low, [0, 1, 2]) and np.allclose(high, [1, 2, 3])
    # no extrapolation: a shorter run only counts inside its own range
    steps, mean, _, _ = seed_curve([{0: 1.0}, {0: 3.0, 10: 5.0}])
    assert steps.tolist() == [0, 10] and mean.tolist() == [2.0, 5.0]
    assert len(seed_curve([])[0]) == 0


def test_plots_handle_missing_values_and_single_evaluations(tmp_path):
    single = make_rows("ce", 0, eval_steps=[40])
    gaps = make_rows("focal", 0)
    for row in gaps[::2]:
        row["val/accuracy"] = None
        row["grad_norm"] = None
    zero = make_rows("mse", 0)
    zero[1]["grad_norm"] = 0.0  # not positive: linear scale
    runs = [(make_record("ce", 0), single), (make_record("focal", 0), gaps), (make_record("mse", 0), zero)]
    runs.append((make_record("ce", 1), []))  # a run with no rows at all
    paths = [
        plot_target(runs, "val/accuracy", tmp_path / "a.png"),
        plot_train_loss(runs, tmp_path / "b.png"),
        plot_grad_norm(runs, tmp_path / "c.png"),
        plot_target([], "val/accuracy", tmp_path / "empty.png"),
        plot_train_loss([], tmp_path / "empty_loss.png"),
    ]
    for path in paths:
        assert path.read_bytes().startswith(PNG)


def test_render_plots_creates_the_folder(tmp_path):
    runs = [(make_record("ce", s), make_rows("ce", s)) for s in (0, 1)]
    paths = render_plots(runs, tmp_path / "plots", "val/accuracy", ["ce", "focal"])
    assert [p.name for p in paths] == ["target_metric.png", "train_loss.png", "grad_norm.png"]
    assert all(p.read_bytes().startswith(PNG) for p in paths)


def test_a_curves_legend_stands_beside_its_axes_not_over_its_curves(monkeypatch, tmp_path):
    """Issue 23 item 6: the legend of every curve plot is drawn outside the axes (it hid the grad-norm curves)."""
    from lossbench.compare.report import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    runs = [(make_record(loss, seed), make_rows(loss, seed)) for loss in ("ce", "focal", "mse") for seed in (0, 1)]
    for rows in (r for _, r in runs):
        for row in rows:
            row.update(grad_norm=1.0 + row["step"], train_loss=2.0)
    plot_grad_norm(runs, tmp_path / "g.png")
    plot_train_loss(runs, tmp_path / "t.png")
    plot_target(runs, "val/accuracy", tmp_path / "a.png")
    for fig in figures:
        fig.canvas.draw()
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is None:
                continue
            box, area = legend.get_window_extent(), ax.get_window_extent()
            assert box.x0 >= area.x1, (box, area)  # wholly to the right of the axes
    assert figures
