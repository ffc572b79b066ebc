"""Readers and writers, checked against the human-readable readout inside the CASTEP files."""

import re

import numpy as np
import pytest

from dynnmr import params, tensorfiles
from dynnmr import tensors as T
from dynnmr.errors import InputError

from conftest import MAGRES


def castep_readout(path):
    """Parse the [magres_old] readout: per site coordinates, tensors and printed parameters."""
    text = path.read_text().split("[magres_old]", 1)[1]
    sites = {}
    for block in re.split(r"=+\nAtom: ", text)[1:]:
        lines = block.splitlines()
        head = lines[0].split()
        coords = None
        entry = {}
        for k, line in enumerate(lines):
            m = re.search(r"Coordinates\s+(\S+)\s+(\S+)\s+(\S+)\s+A", line)
            if m:
                coords = tuple(float(x) for x in m.groups())
            if line.strip() in ("TOTAL Shielding Tensor", "TOTAL tensor"):
                rows = [[float(x) for x in lines[k + j].split()] for j in (2, 3, 4)]
                entry["ms" if "Shielding" in line else "efg"] = np.array(rows)
            for key in ("Isotropic", "Anisotropy", "Asymmetry", "Cq", "Eta"):
                m = re.search(rf"\s{key}:\s+(\S+)", line)
                if m:
                    entry[key] = None if m.group(1) == "N/A" else float(m.group(1))
        key = (head[0], coords)
        sites.setdefault(key, {}).update(entry)
    return sites


def site_index(atoms, coords):
    d = np.linalg.norm(atoms.positions - np.array(coords), axis=1)
    assert d.min() < 2e-3, coords
    return int(d.argmin())


@pytest.mark.parametrize("name", ["EDIZUM.magres", "nacl.magres"])
def test_magres_matches_castep_readout(name):
    path = MAGRES / name
    atoms = tensorfiles.read_magres(path)
    rows = {
        r["index"]: r for r in params.site_table([atoms], isotopes={"H": "2H", "N": "14N"})
    }  # CASTEP's C_Q: 2H, 14N
    readout = castep_readout(path)
    assert len(readout) == len(atoms)
    checked_cq = 0
    for (species, coords), ref in readout.items():
        i = site_index(atoms, coords)
        assert atoms.get_chemical_symbols()[i] == species
        np.testing.assert_allclose(atoms.arrays["ms"][i], ref["ms"], atol=6e-5)
        np.testing.assert_allclose(atoms.arrays["efg"][i], ref["efg"], atol=6e-5)
        row = rows[i]
        assert row["sigma_iso_ppm"] == pytest.approx(ref["Isotropic"], abs=6e-5)
        assert 1.5 * row["zeta_ppm"] == pytest.approx(ref["Anisotropy"], abs=6e-5)
        if ref["Asymmetry"] is not None:
            assert row["eta_sigma"] == pytest.approx(ref["Asymmetry"], abs=6e-5)
        if species in ("H", "N", "O", "Na", "Cl"):  # CASTEP used 11C for carbon; we use 13C
            assert row["Cq_MHz"] == pytest.approx(ref["Cq"], abs=1.5e-4)
            if abs(ref["Cq"]) > 1e-3:
                assert row["eta_Q"] == pytest.approx(ref["Eta"], abs=6e-5)
            checked_cq += 1
    assert checked_cq > 0


def test_magres_layout_labels_and_units():
    eth = tensorfiles.read_magres(MAGRES / "ethanol.magres")
    assert eth.get_chemical_formula() == "C2H6O"
    assert eth.arrays["ms"].shape == (9, 3, 3) and np.isfinite(eth.arrays["efg"]).all()
    assert eth.info["magres_calc_code"] == "CASTEP"
    # every ms line lands on its (label, index) site, row-major
    for line in (MAGRES / "ethanol.magres").read_text().splitlines():
        w = line.split()
        if w and w[0] == "ms":
            i = np.flatnonzero((eth.arrays["magres_label"] == w[1]) & (eth.arrays["magres_index"] == int(w[2])))
            np.testing.assert_array_equal(eth.arrays["ms"][i[0]].ravel(), np.array(w[3:12], dtype=float))
    ed = tensorfiles.read_magres(MAGRES / "EDIZUM.magres")  # symmetry lines and custom labels (H1, C10, ...)
    assert len(ed) == 148 and set(ed.arrays["magres_label"]) >= {"H1", "C10", "N1", "O2"}
    assert ed.pbc.all() and ed.cell.volume > 100


def test_magres_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.magres"
    text = (MAGRES / "ethanol.magres").read_text().splitlines()
    k = next(i for i, line in enumerate(text) if line.strip().startswith("ms "))
    text[k] = text[k].rsplit(" ", 1)[0] + " 1.0x"
    bad.write_text("\n".join(text))
    with pytest.raises(InputError, match=rf"bad.magres:{k + 1}: "):
        tensorfiles.read_magres(bad)
    with pytest.raises(InputError, match="no such file"):
        tensorfiles.read(tmp_path / "missing.magres")
    (tmp_path / "empty.magres").write_text("")
    with pytest.raises(InputError, match="empty"):
        tensorfiles.read(tmp_path / "empty.magres")


def test_extxyz_round_trip_layout_and_nan(tmp_path):
    atoms = tensorfiles.read_magres(MAGRES / "ethanol.magres")
    atoms.arrays["ms"][3] = np.nan  # a missing label
    atoms.arrays["efg"][0] = np.arange(9.0).reshape(3, 3)
    out = tmp_path / "e.extxyz"
    tensorfiles.write_extxyz(out, [atoms, atoms])
    header = out.read_text().splitlines()[1]
    assert "ms:R:9" in header and "efg:R:9" in header
    first = out.read_text().splitlines()[2].split()
    cols = header.split("Properties=")[1].split()[0].split(":")
    start = 0
    for name, _, width in zip(cols[::3], cols[1::3], cols[2::3]):
        if name == "efg":
            assert [float(x) for x in first[start : start + 9]] == list(range(9))  # row-major
        start += int(width)
    back = tensorfiles.read(out)
    assert len(back) == 2
    np.testing.assert_allclose(back[1].arrays["ms"], atoms.arrays["ms"], atol=1e-7, equal_nan=True)  # ase: 8 decimals
    assert np.isnan(back[0].arrays["ms"][3]).all()
    np.testing.assert_allclose(back[0].arrays["efg"], atoms.arrays["efg"], atol=1e-7)


def test_silicate_json(shared_data):
    images = tensorfiles.read(shared_data / "silicate_29si_gipaw.json")
    assert len(images) == 379
    labelled = [np.isfinite(a.arrays["ms"]).all(axis=(1, 2)) for a in images]
    assert sum(int(m.sum()) for m in labelled) == 1228
    import json

    raw = json.loads((shared_data / "silicate_29si_gipaw.json").read_text())
    for a, m in zip(images[:50], labelled[:50]):
        sid = a.info["structure_id"]
        assert set(a.get_chemical_symbols()[i] for i in np.flatnonzero(m)) == {"Si"}
        np.testing.assert_allclose(T.isotropic(a.arrays["ms"][m]), raw["sigma_iso"][sid], atol=1e-5)
        assert (a.arrays["Qn"][m] >= 0).all() and (a.arrays["Qn"][~m] == -1).all()
        np.testing.assert_allclose(
            a.get_scaled_positions(wrap=False), [s["abc"] for s in raw["structure"][sid]["sites"]], atol=1e-5
        )
