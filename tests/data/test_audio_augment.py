"""Audio augmentations (data/audio_augment.py): SpecAugment, time shift, gain, noise at a measured SNR, ranges."""

from __future__ import annotations

import pytest
import torch

from resnetkit.data.audio_augment import (
    NoiseBank,
    add_bank_noise,
    add_noise,
    add_white_noise,
    as_range,
    band_mask,
    random_gain,
    random_time_shift,
    spec_augment,
)


def test_one_parser_of_ranges():
    assert as_range(6, "gain_db", symmetric=True) == (-6.0, 6.0)
    assert as_range(20, "snr_db") == (20.0, 20.0)
    assert as_range([10, 40], "snr_db") == (10.0, 40.0)
    for bad, error in (([40, 10], ValueError), ([1, 2, 3], ValueError), (True, TypeError), (["a", 1], TypeError),
                       (float("nan"), ValueError)):
        with pytest.raises(error, match="snr_db"):
            as_range(bad, "snr_db")


def test_spec_augment_shape_widths_and_independence():
    n, f, t = 256, 40, 101
    ones = torch.ones(n, 1, f, t)
    out = spec_augment(
        ones, torch.Generator().manual_seed(0),
        num_freq_masks=1, freq_mask_width=7, num_time_masks=0, time_mask_width=0,
    )
    assert out.shape == ones.shape
    zero_rows = (out[:, 0] == 0).all(dim=2)  # (n, f): bins masked across every frame
    # Every zero belongs to a fully masked frequency row; nothing else is touched.
    assert torch.equal(out[:, 0] == 0, zero_rows[:, :, None].expand(n, f, t))
    widths = zero_rows.sum(dim=1)
    assert widths.max() == 7 and widths.min() == 0  # widths span [0, max_width]
    assert set(widths.tolist()) == set(range(8))
    for row in zero_rows[widths > 0]:  # each mask is one contiguous band
        idx = torch.nonzero(row)[:, 0]
        assert idx[-1] - idx[0] + 1 == len(idx)
    assert len({tuple(r.tolist()) for r in zero_rows}) > 50  # examples are masked independently

    out = spec_augment(
        ones, torch.Generator().manual_seed(1),
        num_freq_masks=0, freq_mask_width=0, num_time_masks=2, time_mask_width=15,
    )
    zero_cols = (out[:, 0] == 0).all(dim=1)
    assert torch.equal(out[:, 0] == 0, zero_cols[:, None, :].expand(n, f, t))
    assert zero_cols.sum(dim=1).max() <= 30 and zero_cols.sum(dim=1).max() > 15  # two masks can add up


def test_band_mask_exact_width_and_bounds():
    mask = band_mask(500, 20, num_masks=1, max_width=20, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (500, 20)
    assert mask.sum(dim=1).max() == 20  # a band as wide as the axis fits exactly
    assert not band_mask(4, 10, 3, 0).any() and not band_mask(4, 10, 0, 5).any()


def test_spec_augment_is_seeded():
    x = torch.randn(8, 1, 40, 101)
    a = spec_augment(x, torch.Generator().manual_seed(5))
    b = spec_augment(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, x)


@pytest.mark.parametrize("mode", ["zero", "roll"])
def test_random_time_shift(mode):
    n, length, max_shift = 64, 50, 10
    x = torch.arange(1, length + 1, dtype=torch.float32).repeat(n, 1)
    out = random_time_shift(x, max_shift, torch.Generator().manual_seed(0), mode=mode)
    assert out.shape == x.shape
    shifts = set()
    for row in out:
        # Recover the shift from where the first surviving sample went (mod length for rolls).
        first = int(row[row > 0][0].item())
        start = int(torch.nonzero(row == first)[0])
        shift = (start - (first - 1) + length // 2) % length - length // 2
        assert -max_shift <= shift <= max_shift
        expected = torch.roll(x[0], shift)
        if mode == "zero":
            if shift > 0:
                expected[:shift] = 0
            elif shift < 0:
                expected[shift:] = 0
        assert torch.equal(row, expected)
        shifts.add(shift)
    assert len(shifts) > 10  # per example, not one shift for the batch
    again = random_time_shift(x, max_shift, torch.Generator().manual_seed(0), mode=mode)
    assert torch.equal(out, again)

    features = torch.randn(4, 1, 40, 101)
    assert random_time_shift(features, 5, torch.Generator().manual_seed(0)).shape == features.shape


def test_random_gain():
    x = torch.ones(200, 100)
    out = random_gain(x, (-6.0, 6.0), torch.Generator().manual_seed(0))
    gains_db = 20 * torch.log10(out[:, 0])
    assert gains_db.min() >= -6.0 - 1e-4 and gains_db.max() <= 6.0 + 1e-4
    assert gains_db.std() > 2.0  # spread per example
    assert torch.equal(out, random_gain(x, (-6.0, 6.0), torch.Generator().manual_seed(0)))
    torch.testing.assert_close(random_gain(x, -20.0), x * 0.1)


def _snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(clean.pow(2).mean(-1) / (noisy - clean).pow(2).mean(-1))


def test_white_noise_snr():
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(32, 8000, generator=gen) * torch.rand(32, 1, generator=gen)
    noisy = add_white_noise(clean, 10.0, torch.Generator().manual_seed(1))
    assert noisy.shape == clean.shape
    assert (_snr_db(clean, noisy) - 10.0).abs().max() < 0.5
    ranged = add_white_noise(clean, (5.0, 25.0), torch.Generator().manual_seed(1))
    snr = _snr_db(clean, ranged)
    assert snr.min() > 5.0 - 0.5 and snr.max() < 25.0 + 0.5 and snr.std() > 3.0
    assert torch.equal(ranged, add_white_noise(clean, (5.0, 25.0), torch.Generator().manual_seed(1)))


def test_bank_noise_snr_and_crops():
    gen = torch.Generator().manual_seed(0)
    noises = [torch.randn(3000, generator=gen), torch.randn(12000, generator=gen), torch.randn(500, generator=gen) * 3]
    bank = NoiseBank(noises)
    clean = torch.randn(16, 8000, generator=gen)
    noisy = add_bank_noise(clean, bank, 3.0, torch.Generator().manual_seed(2))
    assert (_snr_db(clean, noisy) - 3.0).abs().max() < 0.5
    assert torch.equal(noisy, add_bank_noise(clean, bank, 3.0, torch.Generator().manual_seed(2)))

    crops = bank.sample(30, 1000, torch.Generator().manual_seed(0))
    assert crops.shape == (30, 1000)
    for crop in crops:
        # Each crop is a cyclic slice of one bank entry (short ones loop).
        assert any(
            torch.equal(crop, torch.roll(noise.repeat(1000 // len(noise) + 2), -k)[:1000])
            for noise in noises for k in torch.nonzero(noise == crop[0])[:, 0].tolist()
        )


def test_noise_leaves_silent_examples_silent_and_checks_shapes():
    clean = torch.zeros(2, 100)
    assert torch.equal(add_white_noise(clean, 10.0, torch.Generator().manual_seed(0)), clean)
    with pytest.raises(ValueError, match="shape"):
        add_noise(torch.zeros(2, 100), torch.zeros(2, 99), 10.0)
    with pytest.raises(ValueError, match="snr_db"):
        add_white_noise(torch.ones(2, 100), (20.0, 10.0))
    with pytest.raises(ValueError, match="noises"):
        NoiseBank([])
