"""InputLoss: gaps in CsiArray.source_sequence per source, wrap-around and restarts."""
from espargos_aoa.input_loss import MAX_SOURCES, SEQUENCE_WRAP, InputLoss


def test_gaps_are_counted_per_source():
    loss = InputLoss()
    got = [loss.add("a", n) for n in (0, 1, 2, 5, 6)] + [loss.add("b", n) for n in (100, 101, 110)]
    assert got == [0, 0, 0, 2, 0, 0, 0, 8] and loss.lost == 10 and loss.restarts == 0
    assert loss.add("a", 7) == 0 and loss.add("b", 111) == 0        # interleaved sources do not disturb each other


def test_the_counter_wraps_without_a_gap():
    loss = InputLoss()
    assert [loss.add("a", n % SEQUENCE_WRAP) for n in range(SEQUENCE_WRAP - 2, SEQUENCE_WRAP + 2)] == [0] * 4
    assert loss.add("a", 4) == 2 and loss.lost == 2


def test_a_restarted_driver_is_a_new_stream_not_a_loss():
    loss = InputLoss()
    for n in range(1000):
        loss.add("board", n)
    assert loss.add("board", 0) == 0 and loss.add("board", 1) == 0
    assert loss.lost == 0 and loss.restarts == 1


def test_strangers_cannot_grow_it_and_the_longest_silent_source_goes_first():
    loss = InputLoss()
    loss.add("kept", 0)
    for i in range(MAX_SOURCES):
        loss.add(f"s{i}", 0)
        if i % 100 == 0:
            loss.add("kept", i // 100 + 1)
    assert len(loss._next) == MAX_SOURCES and "kept" in loss._next and "s0" not in loss._next
    assert loss.lost == 0
