"""scripts/profile_int4.py's --hot summary of ncu's SASS source page (the table behind v8/NOTES.md's hot spots)."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "profile_int4.py"
HEADER = ('"Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)",'
          '"stall_long_sb","stall_math","stall_barrier","stall_long_sb (Not Issued)"')


def load_script():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("profile_int4", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_page(path: Path) -> None:
    lines = ['"Kernel Name","kernel_a",', HEADER,
             '"0x10","LDG.E R1, [R2]","5","5","0","5","0","0"',
             '"0x20","PRMT R9, R9, 0x5410, R19","1,200","1,100","1,150","30","20","1,100"',
             '"0x30","HMMA.16816.F32.BF16 R4, R4, R8, R4","795","700","0","795","0","0"',
             '"Kernel Name","kernel_b",', HEADER,
             '"0x40","BAR.SYNC.DEFER_BLOCKING 0x0","10","10","0","0","10","0"']
    path.write_text("\n".join(lines) + "\n")


def test_hot_instructions_ranks_by_samples_and_splits_stall_reasons(tmp_path):
    page = tmp_path / "sass.csv"
    write_page(page)
    text = load_script().hot_instructions(page, top=2)
    lines = text.splitlines()
    # kernel_a: 2000 samples; long_sb 1150/2000 (57.5%, computed a hair under: 57), math 830/2000 (42%),
    # barrier 20/2000 = 1%: reasons of 1% or less are left out
    assert lines[0].startswith("== kernel_a: 3 instructions, 2000 samples")
    assert "long_sb 57%" in lines[0] and "barrier" not in lines[0]
    assert "math 42%" in lines[0]
    assert "(Not Issued)" not in lines[0]
    # the top two of kernel_a, hottest first, with their own largest reasons; the third is cut by top=2
    assert "0x20" in lines[1] and "60.0%" in lines[1] and "long_sb:1150" in lines[1]
    assert "0x30" in lines[2] and "39.8%" in lines[2] and "math:795" in lines[2]
    assert lines[3].startswith("== kernel_b: 1 instructions, 10 samples; by reason: barrier 100%")
    assert "BAR.SYNC" in lines[4] and "barrier:10" in lines[4]
    assert len(lines) == 5
