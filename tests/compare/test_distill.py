"""Issue 12, distillation: a `teacher:` (trained first per seed, or a checkpoint) whose logits on the training rows
the `kd` students learn from; validated up front, fingerprinted per run, checked by the fairness check."""

from __future__ import annotations

import json
import shutil

import lightning.pytorch as pl
import pytest
import torch

from lossbench import LossbenchModule
from lossbench.compare import Comparison, RecipeError, load_recipe
from lossbench.compare.analysis.fairness import check_fairness
from lossbench.compare.execution.recompute import recompute
from lossbench.compare.execution.teacher import fingerprint, training_logits
from lossbench.compare.report.render import render_report
from lossbench.compare.store.layout import WEIGHTS_FILE, run_dir
from lossbench.compare.store.records import RunRecord, load_records, read_csv
from lossbench.compare.store.tensors import load_tensors
from lossbench.data import HFDataModule
from lossbench.functional import distillation_loss
from tests.compare.conftest import tiny_recipe

TEACHER = {"head": "ce", "backbone": {"d_model": 16, "nhead": 2, "num_layers": 1}, "max_steps": 12}
STUDENTS = [
    "ce",
    {"name": "kd", "args": {"temperature": 2.0, "alpha": 0.5}},
    {"name": "kd", "label": "kd_hard", "args": {"alpha": 1.0}},
]


def distil(teacher=TEACHER, losses=STUDENTS, **changes):
    raw = tiny_recipe(executor="fused", losses=losses, **changes)
    raw["teacher"] = teacher
    return raw


@pytest.mark.parametrize(
    ("teacher", "losses", "message"),
    [
        ({"hed": "ce"}, STUDENTS, "unknown key `teacher.hed`; did you mean 'head'"),
        (
            {"checkpoint": "nowhere.ckpt"},
            STUDENTS,
            "`teacher.checkpoint` must be a LossbenchModule checkpoint file, got 'nowhere.ckpt' (no such file)",
        ),
        ({"head": "kd"}, STUDENTS, "`teacher.head` 'kd' distils itself"),
        (
            {"head": "ce", "backbone": {"d_model": 10, "nhead": 3}},
            STUDENTS,
            "`teacher.backbone.nhead`=3 must divide `teacher.backbone.d_model`=10",
        ),
        ({"head": "ce", "max_epochs": 0}, STUDENTS, "`teacher.max_epochs` must be a positive int, got 0"),
    ],
)
def test_bad_teacher_sections_are_refused_naming_the_key(teacher, losses, message):
    with pytest.raises(RecipeError) as info:
        load_recipe(distil(teacher, losses))
    assert message in str(info.value)


def test_students_need_a_teacher_and_a_teacher_needs_a_student(tmp_path):
    raw = tiny_recipe(losses=STUDENTS)
    with pytest.raises(RecipeError, match=r"losses \['kd', 'kd_hard'\] distil from a teacher: give a `teacher:`"):
        Comparison(load_recipe(raw), tmp_path / "a", progress=False).prepare()
    with pytest.raises(RecipeError, match="`teacher` is given but no loss distils from it"):
        Comparison(load_recipe(distil(losses=["ce", "focal"])), tmp_path / "b", progress=False).prepare()


def test_a_checkpoint_teacher_whose_classes_differ_is_refused_before_anything_is_written(tmp_path):
    dm = HFDataModule("lossbench:breast_cancer", batch_size=32)  # 2 classes; the comparison's wine has 3
    model = LossbenchModule(
        "ce",
        head_args={"num_classes": 2},
        data_spec=dm.spec,
        backbone={"d_model": 8, "nhead": 2},
        seed=0,
        metrics=False,
    )
    ckpt = tmp_path / "teacher.ckpt"
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(ckpt)
    with pytest.raises(RecipeError, match=r"`teacher.checkpoint` .* predicts 2 classes .*the data has 3 classes"):
        Comparison(load_recipe(distil({"checkpoint": str(ckpt)})), tmp_path / "out", progress=False).prepare()
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("distil") / "out"
    recipe = load_recipe(distil())
    Comparison(recipe, out, progress=False).run()
    return recipe, out


def test_each_seed_trains_its_teacher_and_every_run_records_its_logits(done):
    recipe, out = done
    cmp = Comparison(recipe, out, progress=False)
    for seed in (0, 1):
        folder = run_dir(out / "teacher", "teacher", seed)
        teacher = RunRecord.load(folder / "record.json")
        assert teacher.status == "finished" and teacher.steps == 12 and teacher.test["test/accuracy"] > 0
        from lossbench.compare.execution.teacher import teacher_recipe

        sub = Comparison(teacher_recipe(recipe), out / "teacher", progress=False)
        dm = cmp.datamodule(seed)
        model = sub.build_model(sub.recipe.losses[0], seed, dm.spec, sub.initial_state(seed, dm.spec))
        model.load_state_dict(load_tensors(folder / WEIGHTS_FILE))
        assert sum(p.numel() for p in model.backbone.parameters()) != sum(
            p.numel()
            for p in cmp.build_model(
                recipe.losses[0], seed, dm.spec, cmp.initial_state(seed, dm.spec)
            ).backbone.parameters()
        )  # the teacher's own backbone (d_model 16), not the students' (8)
        want = fingerprint(training_logits(model, dm))  # recomputed from what the folder keeps
        for loss in ("ce", "kd", "kd_hard"):
            assert RunRecord.load(run_dir(out, loss, seed) / "record.json").fingerprints["teacher"] == want


def test_alpha_one_ignores_the_teacher_and_alpha_half_learns_from_it(done):
    recipe, out = done
    for seed in (0, 1):
        ce = read_csv(run_dir(out, "ce", seed) / "metrics.csv")
        hard = read_csv(run_dir(out, "kd_hard", seed) / "metrics.csv")
        kd = read_csv(run_dir(out, "kd", seed) / "metrics.csv")
        assert hard[0]["train_loss"] is None  # step 0: no training yet
        assert [r["train_loss"] for r in hard[1:]] == pytest.approx([r["train_loss"] for r in ce[1:]], rel=1e-6)
        assert [r["val/accuracy"] for r in hard] == [r["val/accuracy"] for r in ce]
        assert [r["train_loss"] for r in kd][1:] != pytest.approx([r["train_loss"] for r in ce][1:], rel=1e-3)


def test_the_report_shows_the_teachers_and_the_fairness_check_compares_their_logits(done, tmp_path):
    recipe, src = done
    text = (src / "report.md").read_text()
    assert "## Teacher" in text and "| teacher test metric | seeds | mean |" in text and "WARNING" not in text
    assert check_fairness([r for r, _ in load_records(src)]).ok
    assert recompute(src).ok
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    path = run_dir(out, "kd", 1) / "record.json"
    values = json.loads(path.read_text())
    values["fingerprints"]["teacher"] = "0" * 64
    path.write_text(json.dumps(values))
    text = render_report(out).read_text()
    assert "Seed 1: 'kd' has a different teacher's logits on the training rows (teacher)" in text


def test_the_module_hands_the_batch_teacher_to_a_head_that_distils():
    dm = HFDataModule("lossbench:wine", batch_size=16)
    logits = torch.randn(len(dm.train_dataset), 3, generator=torch.Generator().manual_seed(0))
    dm.set_teacher(logits)
    batch = next(iter(dm.train_dataloader()))
    assert batch["teacher"].shape == (16, 3)
    model = LossbenchModule(
        "kd",
        head_args={"temperature": 3.0, "alpha": 0.2},
        data_spec=dm.spec,
        backbone={"d_model": 8, "nhead": 2},
        seed=0,
        metrics=False,
    )
    outputs = model(batch["inputs"])
    loss, terms = model.head_loss(outputs, batch["target"], batch)
    assert torch.allclose(loss, distillation_loss(outputs, batch["target"], batch["teacher"], 3.0, 0.2))
    ce = LossbenchModule("ce", data_spec=dm.spec, backbone={"d_model": 8, "nhead": 2}, seed=0, metrics=False)
    assert ce.head_loss(ce(batch["inputs"]), batch["target"], batch)[1] == {}  # the teacher is not for it
    with pytest.raises(ValueError, match=r"`set_teacher` needs logits of shape \(124, 3\)"):
        dm.set_teacher(torch.zeros(5, 3))


# -- issue 19 B3: a teacher checkpoint is fingerprinted by its contents ---------------------------------------------


def _teacher_checkpoint(path, seed):
    """A small LossbenchModule checkpoint for the comparison's wine data (its weights differ with ``seed``)."""
    dm = HFDataModule("lossbench:wine", batch_size=32)
    model = LossbenchModule("ce", data_spec=dm.spec, backbone={"d_model": 8, "nhead": 2}, seed=seed, metrics=False)
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(path.parent),
    )
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teachers")
    return _teacher_checkpoint(folder / "a.ckpt", 0), _teacher_checkpoint(folder / "b.ckpt", 1)


def test_the_checkpoint_s_contents_are_in_the_setup_hash_and_can_be_pinned(teachers, tmp_path):
    import hashlib

    a, b = teachers
    path = tmp_path / "teacher.ckpt"
    shutil.copy(a, path)
    first = load_recipe(distil({"checkpoint": str(path)}))
    assert first.teacher["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    again = tmp_path / "recipe.yaml"
    again.write_text(first.to_yaml())
    assert load_recipe(again).setup_hash == first.setup_hash  # the resolved recipe pins the contents and runs
    shutil.copy(b, path)  # same path, another teacher
    assert load_recipe(distil({"checkpoint": str(path)})).setup_hash != first.setup_hash
    with pytest.raises(
        RecipeError,
        match=r"the teacher checkpoint '.*teacher.ckpt' changed from the sha256 in the "
        r"recipe .*\(sha256 [0-9a-f]{12} then, [0-9a-f]{12} now\)",
    ):
        load_recipe(distil(first.teacher))
    with pytest.raises(RecipeError, match=r"`teacher.sha256` must be the checkpoint file's sha256"):
        load_recipe(distil({"checkpoint": str(path), "sha256": "abc"}))
    # replaced after the recipe was read, before the comparison loads it: refused before anything is written
    recipe = load_recipe(distil({"checkpoint": str(path)}))
    shutil.copy(a, path)
    with pytest.raises(RecipeError, match=r"the teacher checkpoint '.*teacher.ckpt' changed"):
        Comparison(recipe, tmp_path / "out", progress=False).prepare()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("when", ["between seeds", "mid-run, then resumed"])
def test_a_teacher_checkpoint_replaced_on_disk_is_refused_naming_it(teachers, tmp_path, when):
    """Before: only the path was recorded; a replaced file mixed two teachers across seeds (or within one run,
    resumed) and the fairness check passed."""
    a, b = teachers
    path, out = tmp_path / "teacher.ckpt", tmp_path / "out"
    shutil.copy(a, path)
    raw = distil({"checkpoint": str(path)}, losses=["ce", {"name": "kd", "args": {"alpha": 0.5}}], seeds=[0])
    Comparison(load_recipe(raw), out, progress=False).run()
    if when == "mid-run, then resumed":
        folder = run_dir(out, "kd", 0)
        record = RunRecord.load(folder / "record.json")
        record.status = "running"
        record.save(folder / "record.json")
    else:
        raw["seeds"] = [0, 1]
    shutil.copy(b, path)
    with pytest.raises(
        RecipeError,
        match=rf"the teacher checkpoint '{path}' changed since the runs in `--output` "
        r"'.*out' distilled from it \(sha256 [0-9a-f]{12} then",
    ):
        Comparison(load_recipe(raw), out, progress=False).run()
    assert not run_dir(out, "kd", 1).exists()
    shutil.copy(a, path)  # the same teacher again: the folder resumes
    Comparison(load_recipe(raw), out, progress=False).run()
    assert all(r.status == "finished" for r, _ in load_records(out))


def test_a_teacher_checkpoint_asking_for_a_huge_head_is_refused_before_allocating(teachers, tmp_path):
    """Issue 19 B7: a 210 kB checkpoint with head_args.num_classes 3e7 allocated ~7 GB before failing."""
    path = tmp_path / "huge.ckpt"
    ckpt = torch.load(teachers[0], weights_only=True)
    ckpt["hyper_parameters"]["head_args"] = {"num_classes": 30_000_000}
    torch.save(ckpt, path)
    with pytest.raises(
        RecipeError,
        match=r"`teacher.checkpoint` '.*huge.ckpt' cannot be loaded as a LossbenchModule: "
        r"ValueError: .* build a model of [\d.]+ GB .*refusing to allocate it",
    ):
        Comparison(load_recipe(distil({"checkpoint": str(path)})), tmp_path / "out", progress=False).prepare()
    assert not (tmp_path / "out").exists()


def test_recompute_checks_the_teachers_too(done, tmp_path):
    """Issue 19 (weak): `report --recompute` never looked at DIR/teacher; its runs are recomputed like the students'."""
    _, src = done
    result = recompute(src)
    assert result.ok and {"teacher/teacher seed 0", "teacher/teacher seed 1"} <= set(result.checked)
    out = shutil.copytree(src, tmp_path / "copy")
    path = run_dir(out / "teacher", "teacher", 0) / "record.json"
    record = RunRecord.load(path)
    record.test["test/accuracy"] += 0.001
    record.save(path)
    problems = recompute(out).problems
    assert len(problems) == 1 and problems[0].startswith("teacher/teacher seed 0: test/accuracy is ")


def test_recompute_checks_each_student_s_teacher_fingerprint_against_the_teacher_s_weights(done, tmp_path):
    """The students' records name their teacher by its logits' sha256: recomputed from DIR/teacher's weights."""
    _, src = done
    out = shutil.copytree(src, tmp_path / "copy")
    path = run_dir(out, "kd", 1) / "record.json"
    values = json.loads(path.read_text())
    values["fingerprints"]["teacher"] = "0" * 64
    path.write_text(json.dumps(values))
    problems = recompute(out).problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "kd seed 1: its record's teacher fingerprint 000000000000 is not that of "
        "teacher/teacher seed 1's logits on the training rows, recomputed from its weights"
    )


@pytest.mark.parametrize("removed", ["the teacher folder", "one seed's teacher run", "the student's fingerprint"])
def test_recompute_cannot_be_made_to_skip_a_student_s_teacher_fingerprint(done, tmp_path, removed):
    """Removing DIR/teacher (or one seed's teacher run, or the fingerprint itself) left nothing to recompute the
    students' teacher fingerprints from, and the recompute said nothing: a tampered fingerprint passed."""
    _, src = done
    out = shutil.copytree(src, tmp_path / "copy")
    path = run_dir(out, "kd", 1) / "record.json"
    values = json.loads(path.read_text())
    if removed == "the student's fingerprint":
        del values["fingerprints"]["teacher"]
    else:
        values["fingerprints"]["teacher"] = "0" * 64
    path.write_text(json.dumps(values))
    if removed == "the teacher folder":
        shutil.rmtree(out / "teacher")
    elif removed == "one seed's teacher run":
        shutil.rmtree(run_dir(out / "teacher", "teacher", 1))
    problems = recompute(out).problems
    if removed == "the student's fingerprint":
        assert problems == [
            "kd seed 1: its record has no teacher fingerprint, though its comparison distils from a "
            "teacher trained in teacher/ (every run of a seed records it)"
        ]
    else:
        seeds = [0, 1] if removed == "the teacher folder" else [1]
        assert problems == [
            f"teacher/teacher seed {seed}: no finished run: the teacher fingerprint of ce, kd, "
            f"kd_hard seed {seed} cannot be recomputed"
            for seed in seeds
        ]
