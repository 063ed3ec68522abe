import random

from x2i.mini.judge import check_judge, read_objects, scene_correct, squat
from x2i.mini.world import SQUAT, random_scene, render


def test_judge_reads_1000_fresh_renders_at_least_99_percent():
    report = check_judge(1000, seed=2024)
    assert report["scene_accuracy"] >= 0.99
    assert all(acc >= 0.99 for acc in report["attribute_accuracy"].values())


def test_judge_reads_a_known_scene():
    scene = {"objects": [{"shape": "triangle", "color": "purple", "size": "small", "position": "bottom"},
                         {"shape": "square", "color": "yellow", "size": "large", "position": "center"}]}
    found = read_objects(render(scene, random.Random(0)))
    assert sorted(found, key=lambda o: o["position"]) == sorted(scene["objects"], key=lambda o: o["position"])


def test_geneval_matching():
    found = [{"shape": "circle", "color": "red", "size": "large", "position": "left"},
             {"shape": "square", "color": "blue", "size": "small", "position": "top"}]
    assert scene_correct({"objects": [{"color": "blue"}, {"shape": "circle"}]}, found)  # any order, partial
    assert not scene_correct({"objects": [{"color": "blue"}, {"color": "blue"}]}, found)  # one to one
    assert not scene_correct({"objects": [{"color": "red"}]}, found)  # wrong count
    assert not scene_correct({"objects": [{"color": "red", "size": "small"}, {"shape": "square"}]}, found)


def test_blank_image_has_no_objects():
    from PIL import Image

    assert read_objects(Image.new("RGB", (64, 64), (245, 245, 240))) == []


def test_squat_style_is_seen_in_squat_renders_and_only_there():
    rng = random.Random(2026)
    plain = [squat(render(random_scene(rng), rng)) for _ in range(300)]
    squat_renders = [render(random_scene(rng), rng, aspect=SQUAT) for _ in range(300)]
    assert sum(plain) == 0
    assert sum(map(squat, squat_renders)) >= 0.98 * 300
    assert not squat(render({"objects": []}, rng))
