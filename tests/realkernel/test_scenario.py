"""Scenario files, data blocks of known compressed sizes, guest plans."""

import random

import pytest

from mmplug.realkernel import blocks as B, scenario as S


def test_builtins_load():
    assert S.builtin_names() == ["balloon", "zram", "zswap-z3fold"]
    for name in S.builtin_names():
        sc = S.load(name)
        assert sc.kind in S.KINDS and sc.memory >= 128 << 20


@pytest.mark.parametrize("body, message", [
    ("kind = 'nope'", "kind = 'nope'"),
    ("kind = 'zram'\nmemory = 'lots'", "not a size"),
    ("kind = 'zram'\nmemory = '64M'", "expected 128M..8G"),
    ("kind = 'zram'\n[free]\nfraction = 2.0", "expected a fraction"),
    ("kind = 'zram'\n[free]\npattern = 'sideways'", "pattern = 'sideways'"),
    ("kind = 'zram'\n[zram]\ncompressor = 'zstd'", "only lz4"),
    ("kind = 'zram'\n[blocks]\nprefix = [10]", "prefix must be"),
    ("kind = 'zram'\nseed = 'x'", "seed = 'x'"),
    ("kind = 'balloon'\n[balloon]\ninflate = '1G'", "deflate <= inflate < memory"),
    ("kind = [", "not valid TOML"),
])
def test_bad_scenarios_name_the_problem(tmp_path, body, message):
    path = tmp_path / "s.toml"
    path.write_text(body)
    with pytest.raises(S.ScenarioError, match=message):
        sc = S.load(str(path))
        S.plan(sc, None)


def test_unknown_scenario():
    with pytest.raises(S.ScenarioError, match="built in are balloon, zram, zswap-z3fold"):
        S.load("nosuch")


def test_blocks_are_reproducible_and_their_sizes_are_lz4s(tmp_path):
    mix = B.BlockMix(blocks=64, same_filled=0.2, incompressible=0.2, prefix_min=100,
                     prefix_max=300)
    a = B.generate(mix, 5, tmp_path / "d.img")
    assert a == B.generate(mix, 5)
    assert a != B.generate(mix, 6)
    data = (tmp_path / "d.img").read_bytes()
    assert len(data) == 64 * 4096
    for i, blk in enumerate(a):
        page = data[i * 4096:(i + 1) * 4096]
        if blk.kind == B.SAME:
            assert page == bytes([blk.fill]) * 4096 and blk.compressed == 0
        else:
            assert blk.compressed == B.lz4_size(page)
            if blk.kind == B.RANDOM:
                assert blk.compressed > 4096     # stored whole by zram
            else:
                assert 100 <= blk.compressed < 400


def test_zram_object_sizes_follow_zram_write_page():
    assert S.zram_object_size(B.Block(B.SAME, 0), 3257) is None
    assert S.zram_object_size(B.Block(B.PREFIX, 3256), 3257) == 3256
    assert S.zram_object_size(B.Block(B.PREFIX, 3257), 3257) == 4096


@pytest.mark.parametrize("pattern, expected", [
    ("oldest", [0, 1]), ("newest", [8, 9]), ("alternate", [4, 9]),
])
def test_choose_patterns(pattern, expected):
    assert S.choose(list(range(10)), 0.2, pattern, random.Random(0)) == expected


def test_plans(tmp_path):
    zram = S.plan(S.load("zram"), tmp_path)
    assert zram.script == "zram.sh" and (tmp_path / "data.img").stat().st_size == 8192 * 4096
    runs = zram.files["free.runs"].decode().split("\n")
    assert sum(int(r.split()[1]) for r in runs if r) == len(zram.facts["freed"])
    balloon = S.plan(S.load("balloon"), None)
    assert balloon.balloon and set(balloon.actions) == {"inflate", "deflate"}
    assert balloon.env == {"INFLATE_PAGES": "65536", "DEFLATE_PAGES": "32768"}
    zswap = S.plan(S.load("zswap-z3fold"), None)
    assert zswap.disks == {} and "z3fold" in zswap.modules
