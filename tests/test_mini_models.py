"""The mini-model recipes run, and the shipped mini models load and do what is claimed."""

import json
import random
from pathlib import Path

import pytest
import torch
from diffusers import FluxPipeline

from x2i.app.cli import main
from x2i.inference.loaders import load_encoder
from x2i.inference.locations import locate
from x2i.inference.request import Request
from x2i.mini.answers import answer_accuracy
from x2i.mini.examples import sample_example
from x2i.mini.mllm import (
    MLLMConfig,
    answer_labels,
    batch_loss,
    micro_batches,
    scene_probe,
    train_mllm,
)
from x2i.mini.teacher import (
    TeacherConfig,
    binding_labels,
    build_t5_tokenizer,
    english_corpus,
    train_teacher,
)
from x2i.mini.world import LANGUAGES

# Bars for the shipped models on cases made with the guards' own seeds (never the seeds BENCHMARKS.md
# reports, nor ones tuned on), set below the held-out levels there ("Every input reaches the
# picture") by a margin for 40-case noise. Default road (auto): English by the prompt, the rest by
# the MLLM's answer.
MLLM_SEES = 0.90  # captions in every language, one image, two images (1.00 on 200 each), a clip's last frame (0.98 on 100)
MLLM_ANSWERS = 0.80  # every line: edits 0.925-0.98, conversations 0.945-0.975 on 200 each
MLLM_READS = 0.80  # pages, the five languages' mean: 0.96 on 200 each (0.94-0.995); 0.42 with the tower alone reading
MLLM_READS_CHINESE = 0.85
STUDENT_EN_1OBJ = 0.90
STUDENT_EN_2OBJ = 0.80
STUDENT_ZH_1OBJ = 0.85
STUDENT_IMAGE = 0.80
STUDENT_EDIT = 0.70  # 0.80-0.925 per language on 40 (BENCHMARKS.md)
STUDENT_TWO_IMAGES = 0.80
STUDENT_VIDEO = 0.80  # the last frame of a clip: 0.95 on 40 (BENCHMARKS.md, "Hearing, watching and reading")
STUDENT_DOCUMENT = 0.75  # a page, every language: 0.887-0.975 on 80 each (BENCHMARKS.md, 'Pages read on by the language model')
STUDENT_AUDIO = 0.80  # a spoken caption, every language, by the mini Qwen2.5-Omni: 0.93 on 200 (BENCHMARKS.md), 0.975 here
OMNI_HEARS = 0.85  # its exact-match answers to a spoken caption, every language: 0.95-1.00 on 100 each, 0.94 here
LIGHTCONTROL_EDIT = 0.60  # with the shipped branch, on edits (where copying the source would fail): 0.853 on 300 (BENCHMARKS.md)
FEWSTEP_EN = 0.80  # X2I on mini-fewstep at its 4 steps, English one and two objects together (BENCHMARKS.md, "One AlignNet")
STYLE_SEEN = 0.80  # X2I's English pictures with --flux-lora mini-style that are squat (BENCHMARKS.md, "One AlignNet")


def test_teacher_recipe_runs_and_saves_a_flux_pipeline(tmp_path):
    config = TeacherConfig(vae_steps=2, vae_batch=4, steps=2, batch=4, dataset=256, warmup=1, decoder_steps=2)
    path = train_teacher(config, tmp_path / "teacher", progress=False, snapshots=(1,))
    for directory in (path, path / "step-1"):
        pipe = FluxPipeline.from_pretrained(directory)
        assert pipe.text_encoder is not None and pipe.text_encoder_2 is not None
        image = pipe("a red circle", num_inference_steps=2, height=64, width=64, max_sequence_length=32).images[0]
        assert image.size == (64, 64)


def test_binding_labels_give_each_objects_tokens_its_attributes():
    tokenizer = build_t5_tokenizer(english_corpus(500, seed=0))
    scene = {"objects": [{"shape": "circle", "color": "red", "size": "small", "position": "left"},
                         {"shape": "square", "color": "blue", "size": "large", "position": "top"}]}
    text = "A red circle on the left, and a big blue square at the top."
    first, second = "A red circle on the left", "a big blue square at the top"
    spans = [(text.index(first), text.index(first) + len(first)), (text.index(second), text.index(second) + len(second))]
    labels = binding_labels(tokenizer, [text], [spans], [scene])[0]
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text).input_ids)
    assert tokens[:8] == ["▁A", "▁red", "▁circle", "▁on", "▁the", "▁left,", "▁and", "▁a"]
    assert labels[:6].tolist() == [[0, 0, 0, 0]] * 6  # circle, red, small, left
    assert labels[6].tolist() == [-100] * 4  # "and" belongs to neither object
    assert labels[7:14].tolist() == [[1, 2, 1, 2]] * 7  # square, blue, large, top
    assert (labels[14:] == -100).all()  # </s> and padding


def test_mllm_recipe_runs_and_saves_what_load_encoder_loads(tmp_path):
    path = train_mllm(MLLMConfig(text_steps=2, caption_steps=2, steps=2, edit_steps=2, watch_steps=2, batch=4, vocab_size=600), tmp_path / "mllm", progress=False)
    encoder = load_encoder(path)
    out = encoder.encode([Request("un cercle rouge à gauche")])
    assert out.hidden_states.shape[1] == MLLMConfig.num_layers + 1


def test_the_mllm_recipe_stopped_part_way_leaves_the_older_model_whole(tmp_path, monkeypatch):
    import x2i.mini.mllm

    out, tiny = tmp_path / "mllm", ["--text-steps", "0", "--caption-steps", "0", "--steps", "1", "--edit-steps", "0",
                                    "--watch-steps", "0", "--batch", "2", "--hub-weight", "0", "--vocab-size", "600"]
    assert main(["mini", "train-mllm", "--out", str(out), *tiny]) == 0
    model = (out / "model.safetensors").read_bytes()
    saves, save = [], x2i.mini.mllm.save_qwen2_5_vl

    def interrupted_in_the_last_save(model, tokenizer, image_processor, directory, **kwargs):
        saves.append(directory)
        save(model, tokenizer, image_processor, directory, **kwargs)
        if len(saves) == 2:  # the first save gives the processor back; the second is the trained model
            raise KeyboardInterrupt
        return Path(directory)

    monkeypatch.setattr(x2i.mini.mllm, "save_qwen2_5_vl", interrupted_in_the_last_save)
    assert main(["mini", "train-mllm", "--out", str(out), "--seed", "1", *tiny]) == 130
    assert len(saves) == 2 and all(Path(d) != out for d in saves)  # it wrote beside --out, never into it
    assert (out / "model.safetensors").read_bytes() == model and sorted(p.name for p in tmp_path.iterdir()) == ["mllm"]


def test_answer_labels_cover_the_answer_only(tmp_path):
    path = train_mllm(MLLMConfig(text_steps=0, caption_steps=0, steps=1, edit_steps=0, watch_steps=0, batch=2, hub_weight=0, vocab_size=600), tmp_path / "mllm", progress=False)
    encoder = load_encoder(path)
    rng = random.Random(0)
    examples = [sample_example(rng) for _ in range(6)]
    requests, answers = zip(*examples)
    inputs = encoder.prepare(requests, answers=answers)
    labels = answer_labels(encoder, inputs, answers)
    decode = encoder.processor.tokenizer.decode
    for i, text in enumerate(answers):
        assert decode(inputs["input_ids"][i][labels[i] != -100]) == text + "<|im_end|>"


def test_length_grouped_micro_batches_give_the_whole_batch_loss_and_gradient():
    """The recipe runs each batch as micro-batches of similar length (less padding): every term
    weighted by its share, the loss and the gradient are the whole batch's, up to rounding."""
    from x2i.mini.examples import TRAINING_MIX, sample_with_scene
    from x2i.mini.readout import english_word_ids

    encoder = load_encoder(locate("mini", "mllm"))
    model = encoder.model.train().requires_grad_(True)
    config = MLLMConfig()
    rng = random.Random(4812)
    examples = [sample_with_scene(rng, mix=TRAINING_MIX) for _ in range(12)]
    examples += [sample_with_scene(rng, "document2image") for _ in range(3)]  # pages: each word's tokens, one attribute each
    lengths = encoder.prepare([e.request for e in examples], answers=[e.answer for e in examples])["attention_mask"].sum(1)
    assert lengths.max() - lengths.min() > 20  # the case the groups are for: rows of unlike lengths
    torch.manual_seed(0)
    probe = scene_probe(config.hidden_size)
    word_ids = english_word_ids(encoder.processor.tokenizer)
    results = []
    for groups in (1, 4):
        model.zero_grad(), probe.zero_grad()
        with torch.enable_grad():
            loss, shown = batch_loss(model, micro_batches(encoder, examples, groups), config, word_ids, probe)
            loss.backward()
        results.append((loss.detach(), shown, [p.grad.clone() for p in (model.lm_head.weight, model.model.visual.patch_embed.proj.weight, probe.weight)]))
    (whole, whole_shown, whole_grads), (grouped, grouped_shown, grouped_grads) = results
    assert torch.allclose(whole, grouped, rtol=1e-5) and set(whole_shown) == set(grouped_shown) == {"hub", "probe"}
    for a, b in zip(whole_grads, grouped_grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("stage", [{"watch_steps": 2}, {"watch_steps": 2, "watch_mix": "look"}, {"watch_steps": 0, "read_steps": 2, "read_batch": 4}],
                         ids=["watching", "looking", "reading"])
def test_watching_and_reading_train_the_vision_tower_only(tmp_path, stage):
    """Stages 5 and 6 on a model made by stages 1-4: clips, pages and edits move the vision tower alone,
    so text reads exactly as before (and the AlignNet distilled on it stays valid)."""
    shipped = load_encoder(locate("mini", "mllm"))
    config = MLLMConfig(start_from="mini", batch=4, warmup=0, **stage)
    watched = load_encoder(train_mllm(config, tmp_path / "watched", progress=False))
    before, after = shipped.model.state_dict(), watched.model.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("model.visual.") for name in changed)
    request = Request("un petit carré vert en haut")
    torch.testing.assert_close(watched.encode([request]).hidden_states, shipped.encode([request]).hidden_states, rtol=0, atol=0)


def test_page_text_transcribes_the_page_a_document_shows():
    """Stage 6's OCR task: the same page as document2image draws, asked what it says, answered with
    the words typeset on it (in the page's language), not the scene."""
    from x2i.mini.examples import READ_PAGE, sample_with_scene
    from x2i.mini.language import caption_with_spans
    from x2i.mini.world import random_scene

    for lang in LANGUAGES:
        page, ocr = (sample_with_scene(random.Random(7), task, lang) for task in ("document2image", "page text"))
        rng = random.Random(7)
        text, _ = caption_with_spans(random_scene(rng), lang, rng)  # what the page shows
        assert ocr.request.text == READ_PAGE and ocr.answer == text != page.answer
        assert ocr.request.media[0].tobytes() == page.request.media[0].tobytes() and ocr.shown == page.shown


def test_reading_with_the_language_model_trains_both(tmp_path):
    """`--read-language-lr`: stage 6 moves the language model beside the tower, so text reads
    differently (and the AlignNet, LightControl and LoRA must be made again for the model)."""
    shipped = load_encoder(locate("mini", "mllm"))
    config = MLLMConfig(start_from="mini", watch_steps=0, read_steps=2, read_batch=4, read_language_lr=1e-3, warmup=0)
    read = load_encoder(train_mllm(config, tmp_path / "read", progress=False))
    before, after = shipped.model.state_dict(), read.model.state_dict()
    changed = {name.removeprefix("model.").split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert {"visual", "language_model"} <= changed <= {"visual", "language_model", "lm_head"}
    request = Request("un petit carré vert en haut")
    assert not torch.equal(read.encode([request]).hidden_states, shipped.encode([request]).hidden_states)


def test_stage_4_draws_the_edits_and_questions_stage_3_leaves_wrong():
    """`hard edit`: two objects, one removed, moved or resized, the other kept as it was; `two-object
    question`: a question about one of two objects."""
    from x2i.mini.examples import sample_with_scene

    rng, kinds = random.Random(5), set()
    for _ in range(60):
        example = sample_with_scene(rng, "hard edit")
        before = [obj for obj, _ in example.shown]
        after = example.scene["objects"]
        assert len(before) == 2 and example.request.text and len(example.request.media) == 1
        if len(after) == 1:
            kinds.add("remove")
            assert after[0] in before
        else:
            (a, b), = [(a, b) for a, b in zip(before, after) if a != b]  # the other object is as it was
            (attribute,) = [k for k in a if a[k] != b[k]]
            kinds.add({"position": "move", "size": "resize"}[attribute])
    assert kinds == {"remove", "move", "resize"}
    questions = [sample_with_scene(rng, "two-object question") for _ in range(10)]
    assert all(len(q.scene["objects"]) == 2 and q.request.text.endswith("?") for q in questions)


def test_deepening_keeps_what_the_model_computes(tmp_path):
    """`--add-layers`: copies of language-model layers that start as the identity — more depth for
    stage 4, the same hidden states (one more per copy, equal to the layer's before it) and answers."""
    shipped = load_encoder(locate("mini", "mllm"))
    deeper = load_encoder(train_mllm(MLLMConfig(start_from="mini", add_layers=(1, 3), watch_steps=0), tmp_path / "deeper", progress=False))
    request = Request("un petit carré vert en haut")
    before, after = shipped.encode([request]).hidden_states, deeper.encode([request]).hidden_states
    assert after.shape[1] == before.shape[1] + 2
    kept = [h + (h > 2) + (h > 4) for h in range(before.shape[1])]  # hidden state h: the output of layer h - 1
    torch.testing.assert_close(after[:, kept], before, rtol=0, atol=1e-5)
    torch.testing.assert_close(after[:, 3], after[:, 2], rtol=0, atol=0)
    torch.testing.assert_close(after[:, 6], after[:, 5], rtol=0, atol=0)
    assert deeper.answer([request], 48) == shipped.answer([request], 48)
    assert main(["mini", "train-mllm", "--add-layers", "1", "--out", str(tmp_path / "new")]) == 2  # a new model takes --num-layers
    assert main(["mini", "train-mllm", "--start-from", "mini", "--add-layers", "99", "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()  # refused before anything was written


def test_shipped_mini_mllm_understands_the_world():
    """Exact-match answers on fresh requests of every task and language (BENCHMARKS.md: 200 each)."""
    accuracy = answer_accuracy(load_encoder(locate("mini", "mllm")), n=20, seed=4711)
    assert len(accuracy) == 24 and not any(line.startswith("audio2image") for line in accuracy)  # it does not hear
    pages = {lang: accuracy.pop(f"document2image {lang}") for lang in LANGUAGES}
    assert pages["zh"] >= MLLM_READS_CHINESE and sum(pages.values()) / len(pages) >= MLLM_READS, pages  # pages are read (BENCHMARKS.md, 'Pages read on by the language model')
    sees = [v for line, v in accuracy.items() if line.split()[0] in ("text2image", "image2image", "multiimage2image", "video2image")]
    assert len(sees) == 8
    assert min(sees) >= MLLM_SEES and min(accuracy.values()) >= MLLM_ANSWERS, accuracy


def test_shipped_teacher_scores_as_claimed():
    """The issue's bars (0.90 one object, 0.75 two) on fresh cases; BENCHMARKS.md has 0.99 / 0.95 on 300 each."""
    from x2i.inference.loaders import load_flux
    from x2i.mini.eval import make_cases, run_teacher, summarize

    teacher = load_flux(locate("mini", "flux"), text_encoders=True)
    cases = make_cases(60, tasks=("text2image",), langs=("en",), seed=4807, num_objects=1)  # the guards' own seeds, used for nothing else
    cases += make_cases(60, tasks=("text2image",), langs=("en",), seed=4808, num_objects=2)
    report = summarize(run_teacher(teacher, cases, seed=4807, steps=20, progress=False))
    assert report["n"] == 120
    assert report["by_objects"]["1"] >= 0.90 and report["by_objects"]["2"] >= 0.75


def test_scene_probe_reads_the_closing_tokens_of_every_prompt():
    """The probe's positions are the chat template's closing tokens, whatever the input's modality."""
    import torch

    from x2i.mini.examples import sample_with_scene
    from x2i.mini.mllm import OBJECT_CLASSES, answer_labels, scene_targets

    encoder = load_encoder(locate("mini", "mllm"))
    rng = random.Random(3)
    for task in ("text2image", "image2image", "imagetext2image", "multiimage2image"):
        requests, answers, scenes, _ = zip(*(sample_with_scene(rng, task) for _ in range(3)))
        inputs = encoder.prepare(requests, answers=answers)
        start = (answer_labels(encoder, inputs, answers) != -100).int().argmax(dim=1)
        for i in range(3):
            closing = encoder.processor.tokenizer.decode(inputs["input_ids"][i, start[i] - 6 : start[i]])
            assert closing == "'}<|im_end|>\n<|im_start|>assistant\n"
    scene = {"objects": [{"shape": "square", "color": "blue", "size": "small", "position": "top"}]}
    targets = scene_targets(scene)
    assert targets[2] == 1 + OBJECT_CLASSES.index(("square", "blue", "small")) and targets.count(0) == 4
    assert len(set(OBJECT_CLASSES)) == 36 and torch.tensor(targets).max() <= 36


def test_shipped_student_scores_as_claimed():
    """X2I on the shipped mini models by the default road: English text (one and two objects),
    Chinese (a language distillation never saw, read through the MLLM's answer), single images,
    edits and pairs of images (inputs distillation never saw)."""
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import make_cases, run_student, summarize

    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"))

    def score(seed, n=40, **kw):
        return summarize(run_student(pipe, make_cases(n, seed=seed, **kw), seed=seed, steps=20, progress=False))

    text = score(4801, tasks=("text2image",), langs=("en", "zh"), num_objects=1)
    assert text["n"] == 80 and text["by_lang"]["en"] >= STUDENT_EN_1OBJ and text["by_lang"]["zh"] >= STUDENT_ZH_1OBJ, text
    assert text["roads"] == {"answer": 40, "prompt": 40}  # auto: English by its prompt, Chinese by the answer
    assert score(4802, tasks=("text2image",), langs=("en",), num_objects=2)["overall"] >= STUDENT_EN_2OBJ
    assert score(4803, tasks=("image2image",), langs=("en",))["overall"] >= STUDENT_IMAGE
    edits = score(4804, n=20, tasks=("imagetext2image",), langs=("en", "de"))
    assert edits["overall"] >= STUDENT_EDIT, edits
    assert score(4805, tasks=("multiimage2image",), langs=("en",))["overall"] >= STUDENT_TWO_IMAGES


def cases_as_files(tmp_path: Path, n: int, task: str, seed: int) -> list[dict]:
    """Fresh cases of a file task, written as `x2i mini make-cases` writes them (the case file and its
    media beside it) and read back as `x2i eval` reads a user's."""
    from x2i.media.files import write_lines
    from x2i.mini.eval import load_cases, make_cases

    made = make_cases(n, (task,), seed=seed, media=tmp_path / "cases-media")
    write_lines(tmp_path / "cases.jsonl", [json.dumps(c) for c in made])  # as the command writes them
    return load_cases(tmp_path / "cases.jsonl")


def test_shipped_student_draws_the_last_frame_of_a_clip(tmp_path):
    """video2image by the default road on the shipped mini Qwen2.5-VL (stage 5), clips written as
    files (mp4 and gif in turn) and read back as a user's would be."""
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import run_student, summarize
    from x2i.mini.world import MEDIA_TASKS

    cases = cases_as_files(tmp_path, 20, "video2image", seed=4821)
    assert {c["video"][-4:] for c in cases} == {".mp4", ".gif"} and MEDIA_TASKS["video2image"]["file"] == "video"
    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"))
    assert summarize(run_student(pipe, cases, seed=4821, steps=20, progress=False))["overall"] >= STUDENT_VIDEO


def test_shipped_student_draws_what_a_page_says(tmp_path):
    """document2image by the default road on the shipped mini Qwen2.5-VL (stage 6): captions in the
    five languages typeset on pages, written as png files and read back as a user's would be."""
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import readers, run_student, summarize

    cases = cases_as_files(tmp_path, 8, "document2image", seed=4841)
    assert readers(cases, None) == {"mini": list(range(40))} and {c["lang"] for c in cases} == set(LANGUAGES)
    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"))
    scores = summarize(run_student(pipe, cases, seed=4841, steps=20, progress=False))
    assert scores["overall"] >= STUDENT_DOCUMENT and scores["roads"] == {"answer": 40}, scores


def test_shipped_omni_hears_what_is_said(tmp_path):
    """audio2image by the default road on the shipped mini Qwen2.5-Omni (`mini-omni`, the reader
    `x2i eval` picks for sound), captions spoken in the five languages, written as wav files and
    read back as a user's would be; and its answers."""
    from x2i.inference.locations import alignnet_for
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import readers, run_student, summarize

    cases = cases_as_files(tmp_path, 8, "audio2image", seed=4831)
    assert readers(cases, None) == {"mini-omni": list(range(40))}
    assert alignnet_for("mini-omni") == "mini-omni" and locate("mini-omni", "alignnet") != locate("mini", "alignnet")  # its own
    pipe = X2IPipeline.from_pretrained("mini-omni", "mini", "mini-omni")
    scores = summarize(run_student(pipe, cases, seed=4831, steps=20, progress=False))
    assert scores["overall"] >= STUDENT_AUDIO, scores
    answers = answer_accuracy(pipe.encoder, n=10, seed=4832, tasks=("audio2image",))
    assert len(answers) == 5 and sum(answers.values()) / 5 >= OMNI_HEARS, answers


def test_flow_matching_packs_latents_and_places_them_as_flux_does():
    """diffusers keeps its latent packing private; x2i's one helper must equal it, and the public
    route to the positions must give diffusers' own ids."""
    import torch

    from x2i.training.flow_matching import latent_image_ids, pack_latents

    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(pack_latents(x), FluxPipeline._pack_latents(x, 2, 8, 16, 16))
    assert torch.equal(FluxPipeline._unpack_latents(pack_latents(x), 64, 64, vae_scale_factor=4), x)
    flux = FluxPipeline.from_pretrained(locate("mini", "flux"), text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    ids = latent_image_ids(flux, 64, 96, "cpu", torch.float32)
    assert torch.equal(ids, FluxPipeline._prepare_latent_image_ids(1, 8, 12, "cpu", torch.float32))


def test_mllm_captioning_stage_trains_the_vision_tower_only(tmp_path):
    from safetensors.torch import load_file

    def weights(caption_steps):
        config = MLLMConfig(text_steps=0, caption_steps=caption_steps, steps=0, edit_steps=0, watch_steps=0, batch=4, vocab_size=600, warmup=0)
        return load_file(train_mllm(config, tmp_path / str(caption_steps), progress=False) / "model.safetensors")

    before, after = weights(0), weights(2)
    changed = {name for name in before if not (before[name] == after[name]).all()}
    assert changed and all(name.split(".")[0] == "visual" or ".visual." in name for name in changed)
    assert any("merger" in name for name in changed)


def test_shipped_lightcontrol_and_lora():
    """The shipped branch and LoRA (trained on English edit triples only) are small, load into the
    mini FLUX, and each, trained on the default road's conditioning, keeps edits (not only copies of
    the source) about as right as plain X2I on the same cases, noise and road (branch 0.86 vs 0.87
    on 300, LoRA 0.87 vs 0.89 on 120: neither adds to what the MLLM's answer already draws;
    BENCHMARKS.md)."""
    from x2i.inference.lora import load_lora
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import make_cases, run_student, summarize

    for name in ("lightcontrol", "lora"):
        assert sum(f.stat().st_size for f in locate("mini", name).iterdir()) < 5e6
    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"), lightcontrol="mini")
    cases = make_cases(20, tasks=("imagetext2image",), langs=("en", "zh"), seed=4806)
    controlled = summarize(run_student(pipe, cases, seed=4806, steps=20, progress=False))["overall"]
    plain = summarize(run_student(pipe, cases, seed=4806, steps=20, progress=False, lightcontrol_scale=0))["overall"]
    assert controlled >= LIGHTCONTROL_EDIT and controlled >= plain - 0.15, (controlled, plain)
    pipe.lightcontrol = None
    load_lora(pipe.flux, "mini")
    adapted = summarize(run_student(pipe, cases, seed=4806, steps=20, progress=False))["overall"]
    assert adapted >= LIGHTCONTROL_EDIT and adapted >= plain - 0.15, (adapted, plain)

    flux = FluxPipeline.from_pretrained(locate("mini", "flux"), text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    inputs = dict(hidden_states=torch.randn(1, 64, 32), timestep=torch.tensor([0.5]), encoder_hidden_states=torch.randn(1, 7, 96),
                  pooled_projections=torch.randn(1, 64), txt_ids=torch.zeros(7, 3), img_ids=torch.zeros(64, 3))
    with torch.no_grad():
        before = flux.transformer(**inputs).sample
        flux.load_lora_weights(str(locate("mini", "lora")))  # plain diffusers reads it
        assert not torch.allclose(before, flux.transformer(**inputs).sample)


@pytest.mark.parametrize("kind", ["fewstep", "style"])
def test_derivative_recipes_run_and_save_a_lora_diffusers_reads(tmp_path, kind):
    from x2i.mini.derivatives import (
        FewStepConfig,
        StyleConfig,
        train_fewstep,
        train_style,
    )

    if kind == "fewstep":
        out = train_fewstep(FewStepConfig(pairs=8, teacher_steps=2, steps=2, batch=4, rank=2), tmp_path / kind, progress=False)
    else:
        out = train_style(StyleConfig(pictures=8, steps=2, batch=4, rank=2), tmp_path / kind, progress=False)
    flux = FluxPipeline.from_pretrained(locate("mini", "flux"), text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    flux.load_lora_weights(str(out))
    assert flux.get_active_adapters()


def test_a_derivative_recipe_cut_while_saving_leaves_the_old_lora_whole(tmp_path, monkeypatch):
    from x2i.mini.derivatives import StyleConfig, train_style

    out = tmp_path / "style"
    out.mkdir()
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"the old LoRA")

    def cut(directory, **_):
        (Path(directory) / "pytorch_lora_weights.safetensors").write_bytes(b"half a")
        raise OSError("disk full")

    monkeypatch.setattr(FluxPipeline, "save_lora_weights", cut)
    with pytest.raises(OSError):
        train_style(StyleConfig(pictures=4, steps=1, batch=2, rank=2), out, progress=False)
    assert [p.name for p in out.iterdir()] == ["pytorch_lora_weights.safetensors"]
    assert (out / "pytorch_lora_weights.safetensors").read_bytes() == b"the old LoRA"


def test_shipped_style_lora_makes_x2i_draw_squat_shapes_and_only_with_it():
    """--flux-lora mini-style, trained on the teacher with T5/CLIP alone, restyles X2I's pictures."""
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import make_cases, run_student
    from x2i.mini.judge import squat

    assert sum(f.stat().st_size for f in locate("mini-style", "lora").iterdir()) < 5e6
    cases = make_cases(20, tasks=("text2image",), langs=("en",), seed=4811)
    for loras, low, high in (((), 0.0, 0.1), ((("mini-style", 1.0),), STYLE_SEEN, 1.0)):
        pipe = X2IPipeline.from_pretrained("mini", "mini", "mini", flux_loras=loras)
        results = run_student(pipe, cases, seed=4811, steps=20, progress=False)
        assert low <= sum(squat(r["image"]) for r in results) / len(results) <= high, loras


def test_shipped_fewstep_flux_is_the_teacher_with_its_lora_fused_and_x2i_drives_it():
    """--flux mini-fewstep: the teacher's transformer with the reflow LoRA fused in (no adapter left),
    4 steps by default; the shipped AlignNet, never distilled on it, draws English scenes there."""
    from x2i.app.cli import build_parser
    from x2i.app.commands import resolve_model_options
    from x2i.inference.loaders import load_flux
    from x2i.inference.locations import fused_lora
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import make_cases, run_student, summarize

    assert sum(f.stat().st_size for f in fused_lora("mini-fewstep").iterdir()) < 5e6
    base, fewstep = load_flux("mini"), load_flux("mini-fewstep")
    a, b = base.transformer.transformer_blocks[0].attn.to_q.weight, fewstep.transformer.transformer_blocks[0].attn.to_q.weight
    assert not torch.equal(a, b) and not getattr(fewstep.transformer, "peft_config", None)
    args = build_parser("generate").parse_args(["generate", "--flux", "mini-fewstep", "--prompt", "x"])
    resolve_model_options(args)
    assert args.steps == 4
    pipe = X2IPipeline.from_pretrained("mini", "mini-fewstep", "mini")
    cases = make_cases(20, tasks=("text2image",), langs=("en",), seed=4810)
    assert summarize(run_student(pipe, cases, seed=4810, steps=4, progress=False))["overall"] >= FEWSTEP_EN
