"""Every reader (Qwen2.5-VL, InternVL, Qwen2.5-Omni) on every input it takes: one forward pass that
equals the first step of the model's own `generate()`, inputs kept in the order given, and clear
refusals of what a reader cannot take."""

import numpy as np
import pytest
import torch
from conftest import random_image, write_clip, write_clip_with_sound, write_sound

from x2i.errors import X2IError
from x2i.inference.loaders import encoder_class, load_encoder
from x2i.inference.request import Request
from x2i.media import Audio, Video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clips")
    return {
        "video": Video.load(write_clip(directory / "clip.mp4")),
        "audio": Audio.load(write_sound(directory / "tone.wav")),
    }


@pytest.fixture(scope="module")
def encoders(tiny_readers):
    return {reader: load_encoder(paths["mllm"]) for reader, paths in tiny_readers.items()}


def requests_for(reader, clips):
    """Text alone, and every input the reader takes, alone and mixed, in one batch."""
    requests = [
        Request("a red circle on the left"),
        Request("make the square blue", [random_image(1)]),
        # InternVL tiles a wide image into several tiles and adds a thumbnail
        Request("", [random_image(2), random_image(3, size=(150, 50))]),
    ]
    if reader in ("qwen2_5_vl", "qwen2_5_omni"):
        requests.append(Request("a picture of this clip", [clips["video"]]))
    if reader == "qwen2_5_omni":
        requests += [
            Request("draw what you hear", [clips["audio"]]),
            Request("this sound, in this scene", [random_image(4), clips["audio"], clips["video"]]),
        ]
    return requests


def generate_first_step(encoder, inputs):
    out = encoder.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_hidden_states=True, return_dict_in_generate=True)
    return torch.stack(out.hidden_states[0], dim=1)


@pytest.mark.parametrize("reader", ["qwen2_5_vl", "internvl", "qwen2_5_omni"])
@pytest.mark.parametrize("pad_to", [None, 400])
def test_one_pass_equals_the_first_step_of_generate(encoders, clips, reader, pad_to):
    encoder = encoders[reader]
    requests = requests_for(reader, clips)
    ours = encoder.encode(requests, pad_to=pad_to)
    reference = generate_first_step(encoder, encoder.prepare(requests, pad_to=pad_to))
    assert ours.hidden_states.shape == reference.shape
    assert ours.hidden_states.shape[:2] == (len(requests), encoder.num_hidden_states)
    if pad_to:
        assert ours.hidden_states.shape[2] == pad_to
    torch.testing.assert_close(ours.hidden_states, reference, rtol=0, atol=1e-6)


@pytest.mark.parametrize("reader", ["qwen2_5_vl", "internvl", "qwen2_5_omni"])
def test_batching_does_not_change_a_prompts_states(encoders, clips, reader):
    encoder = encoders[reader]
    requests = requests_for(reader, clips)
    batch = encoder.encode(requests)
    for i, request in enumerate(requests):
        alone = encoder.encode([request])
        n = alone.hidden_states.shape[2]
        assert batch.attention_mask[i].sum() == n
        torch.testing.assert_close(batch.hidden_states[i, :, -n:], alone.hidden_states[0], rtol=1e-4, atol=1e-5)


def test_internvl_reads_the_raw_prompt_with_its_image_tiles(encoders):
    encoder = encoders["internvl"]
    processor = encoder.processor
    wide, square = random_image(3, size=(150, 50)), random_image(2)
    inputs = encoder.prepare([Request("make it red", [square, wide])])
    # no chat template: the prompt is the dict string, after one <img>...</img> per image
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    assert text.endswith("{'Text input': 'no', 'Instruction editing description': 'make it red', 'image input': 'yes'}")
    assert "<|im_start|>" not in text and text.count("<img>") == 2
    tiles = [processor.image_processor(images=[image], crop_to_patches=True)["num_patches"][0] for image in (square, wide)]
    assert tiles[1] > tiles[0] >= 1  # the wide image is cut into more tiles
    assert inputs["pixel_values"].shape[0] == sum(tiles)
    context = (inputs["input_ids"] == encoder.model.config.image_token_id).sum()
    assert context == processor.image_seq_length * sum(tiles)


@pytest.mark.parametrize("reader", ["qwen2_5_vl", "internvl", "qwen2_5_omni"])
def test_what_a_reader_announces_is_what_it_gives(encoders, reader):
    """AlignNets are sized, and checked against their MLLM, by the reader's announced
    (num_hidden_states, hidden_size): every layer's output plus the embeddings. It must be the shape
    `encode` returns (an official preset fits a model exactly when its layers + 1 and width are the
    preset's; the presets' own sizes are held to the release's parameter counts in test_alignnet)."""
    encoder = encoders[reader]
    states = encoder.encode([Request("a red circle"), Request("make it blue", [random_image(2)])])
    config = encoder.model.config.get_text_config()
    assert states.hidden_states.shape[1] == encoder.num_hidden_states == config.num_hidden_layers + 1
    assert states.hidden_states.shape[-1] == encoder.hidden_size == config.hidden_size


def test_omni_keeps_the_order_of_the_inputs(encoders, clips):
    encoder = encoders["qwen2_5_omni"]
    config = encoder.model.config
    for media, order in [
        ([clips["audio"], random_image(1), clips["video"]], [config.audio_token_id, config.image_token_id, config.video_token_id]),
        ([clips["video"], clips["audio"], random_image(1)], [config.video_token_id, config.audio_token_id, config.image_token_id]),
    ]:
        ids = encoder.prepare([Request("draw it", media)])["input_ids"][0].tolist()
        firsts = [ids.index(token) for token in order]
        assert firsts == sorted(firsts)


def test_sound_changes_the_states(encoders, tmp_path):
    encoder = encoders["qwen2_5_omni"]
    low = Audio.load(write_sound(tmp_path / "low.wav", frequency=220))
    high = Audio.load(write_sound(tmp_path / "high.wav", frequency=1760))
    a, b = (encoder.encode([Request("draw it", [clip])]).hidden_states for clip in (low, high))
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_audio_positions_are_the_thinkers_own(encoders, clips):
    """Audio tokens advance the temporal position 25 per second of sound, as generate() places them."""
    encoder = encoders["qwen2_5_omni"]
    inputs = encoder.prepare([Request("draw it", [clips["audio"]])])
    positions = encoder.position_ids(inputs)
    is_audio = inputs["input_ids"][0] == encoder.model.config.audio_token_id
    temporal = positions[1, 0][is_audio]
    assert temporal.numel() == 25  # one second of sound
    assert torch.equal(temporal - temporal[0], torch.arange(25))


@pytest.fixture(scope="module")
def sounding(tmp_path_factory):
    """A 3 s clip with a tone as its sound track, and the same frames without it."""
    clip = Video.load(write_clip_with_sound(tmp_path_factory.mktemp("sounding") / "clip.mp4"))
    return clip, Video(clip.path, clip.duration, clip.fps)


def test_omni_hears_the_sound_inside_a_clip(encoders, sounding):
    """use_audio_in_video: the track's tokens sit inside the clip's span, interleaved with its frames
    in 2-second chunks; the pass equals the first step of generate() given the same switch, and the
    prompt is the one transformers' processor makes from the decoded track."""
    encoder = encoders["qwen2_5_omni"]
    config = encoder.model.config
    clip, silent = sounding
    request = Request("draw what you see and hear", [clip])
    inputs = encoder.prepare([request])
    assert inputs["use_audio_in_video"] is True
    ids = inputs["input_ids"][0].tolist()
    video = [i for i, t in enumerate(ids) if t == config.video_token_id]
    audio = [i for i, t in enumerate(ids) if t == config.audio_token_id]
    assert len(audio) == 75  # 3 s of sound at 25 tokens a second
    assert video[0] < audio[0] < video[-1] < audio[-1]  # chunk 1 of frames, chunk 1 of sound, chunk 2 of frames, ...
    assert ids[video[0] - 2 : video[0]] == [config.vision_start_token_id, config.audio_start_token_id]
    reference = encoder.processor(
        text=[encoder.prompt_text(request)], videos=[clip.frames(encoder.video_fps)], fps=encoder.video_fps,
        audio=[clip.sound.decode(16000)], audio_from_video_indices=[0], load_audio_from_video=True, return_tensors="pt",
    )
    assert torch.equal(reference["input_ids"], inputs["input_ids"])
    ours = encoder.encode([request]).hidden_states
    torch.testing.assert_close(ours, generate_first_step(encoder, inputs), rtol=0, atol=1e-6)
    assert not torch.allclose(ours[:, -1, -1], encoder.encode([Request("draw what you see and hear", [silent])]).hidden_states[:, -1, -1])


def test_omni_reads_clips_with_and_without_sound_apart(encoders, sounding):
    clip, silent = sounding
    with pytest.raises(X2IError, match="every clip read together or of none"):
        encoders["qwen2_5_omni"].prepare([Request("a", [clip]), Request("b", [silent])])


def test_a_reader_refuses_what_it_cannot_take(encoders, clips, tiny_readers):
    with pytest.raises(X2IError, match="Qwen2.5-VL does not take audio .*Qwen2.5-Omni"):
        encoders["qwen2_5_vl"].encode([Request("draw it", [clips["audio"]])])
    with pytest.raises(X2IError, match="InternVL does not take video"):
        encoder_class(tiny_readers["internvl"]["mllm"]).check(Request("draw it", [clips["video"]]))


def test_omni_refuses_a_clip_longer_than_it_hears(encoders):
    long_clip = Audio.from_array(np.zeros(16000 * 31, dtype=np.float32), 16000)
    with pytest.raises(X2IError, match=r"31.0 s long; Qwen2.5-Omni hears at most 30 s"):
        encoders["qwen2_5_omni"].prepare([Request("draw it", [long_clip])])


def test_unsupported_layouts_say_what_to_do(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internvl_chat"}))
    with pytest.raises(X2IError, match="convert it to transformers' -hf layout"):
        encoder_class(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "minicpmo"}))
    with pytest.raises(X2IError, match="MiniCPM-o runs only as remote code"):
        encoder_class(tmp_path)


def test_padding_the_prompt_does_not_cut_the_sound(encoders, clips):
    encoder = encoders["qwen2_5_omni"]
    request = Request("draw what you hear", [clips["audio"]])
    plain, padded = encoder.prepare([request]), encoder.prepare([request], pad_to=400)
    assert padded["input_ids"].shape[1] == 400
    assert plain["feature_attention_mask"].sum() == padded["feature_attention_mask"].sum() == 100  # 1 s of 10 ms frames
    assert (padded["input_ids"] == encoder.model.config.audio_token_id).sum() == 25


def test_a_whole_omni_checkpoint_loads_only_its_thinker(encoders, tiny_readers, tmp_path):
    """Qwen/Qwen2.5-Omni-7B is a whole model (model_type qwen2_5_omni: thinker, talker, speech
    decoder); the thinker alone loads from it and reads as the thinker saved on its own."""
    import shutil

    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    thinker = encoders["qwen2_5_omni"].model
    whole = Qwen2_5OmniForConditionalGeneration(Qwen2_5OmniConfig(thinker_config=thinker.config.to_dict(), enable_audio_output=False))
    whole.thinker.load_state_dict(thinker.state_dict())
    whole.save_pretrained(tmp_path)
    source = tiny_readers["qwen2_5_omni"]["mllm"]
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json", "video_preprocessor_config.json"):
        shutil.copy(source / name, tmp_path / name)
    encoder = load_encoder(tmp_path)
    assert type(encoder).__name__ == "Qwen2_5OmniEncoder" and type(encoder.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    request = [Request("draw it", [random_image(1)])]
    torch.testing.assert_close(encoder.encode(request).hidden_states, encoders["qwen2_5_omni"].encode(request).hidden_states, rtol=0, atol=0)


@pytest.mark.parametrize("reader", ["qwen2_5_vl", "internvl", "qwen2_5_omni"])
def test_request_tokens_are_every_media_token_and_the_users_text(encoders, clips, reader):
    """What an AlignNet with stream "request" gives FLUX, for every input each reader takes."""
    encoder = encoders[reader]
    requests = requests_for(reader, clips)
    inputs = encoder.prepare(requests)
    mask = encoder.request_tokens(requests, inputs)
    config = encoder.model.config
    media = {getattr(config, name) for name in ("image_token_id", "video_token_id", "audio_token_id") if hasattr(config, name)}
    for row, request in enumerate(requests):
        ids = inputs["input_ids"][row]
        is_media = torch.isin(ids, torch.tensor(sorted(media)))
        assert is_media.any() == bool(request.media) and mask[row][is_media].all()
        assert not mask[row][inputs["attention_mask"][row] == 0].any()
        text = encoder.processor.tokenizer.decode(ids[mask[row] & ~is_media], skip_special_tokens=True)
        assert text == request.text
