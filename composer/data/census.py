"""UCI Census-Income (KDD), the data set of the MMoE paper (Ma et al., KDD 2018, section 6.3).

Protocol ``census-mtl`` (../shared/data/DATA.md): the 99,762-row UCI test file is re-split by
``b = int(md5(line).hexdigest()[:8], 16) % 10`` over each non-empty raw line without its newline
(b <= 7 train, 8 valid, 9 test); tasks ``income`` (income class ``50000+``) and
``never_married`` (marital stat ``Never married``); features are every other column except
marital stat, the income class and the instance weight; the 7 continuous columns are numeric,
the rest categorical strings ('?' is missing, padding spaces stripped). ``census-msl`` is the
same with ``sex`` as the scenario (it stays a feature too). No GAUC group.
"""
from __future__ import annotations

import gzip

import numpy as np

from .dataset import DataSpec, Dataset
from .errors import DataError, Location

FILE = "census_income_kdd/census-income.test.gz"

# The 42 fields in file order, as census-income.names lists them (snake_case). The names file
# lists 40 attributes; the data also holds the instance weight (after field 23) and the class.
COLUMNS = (
    "age", "class_of_worker", "detailed_industry_recode", "detailed_occupation_recode",
    "education", "wage_per_hour", "enroll_in_edu_inst_last_wk", "marital_stat",
    "major_industry_code", "major_occupation_code", "race", "hispanic_origin", "sex",
    "member_of_a_labor_union", "reason_for_unemployment", "full_or_part_time_employment_stat",
    "capital_gains", "capital_losses", "dividends_from_stocks", "tax_filer_stat",
    "region_of_previous_residence", "state_of_previous_residence",
    "detailed_household_and_family_stat", "detailed_household_summary_in_household",
    "instance_weight", "migration_code_change_in_msa", "migration_code_change_in_reg",
    "migration_code_move_within_reg", "live_in_this_house_1_year_ago",
    "migration_prev_res_in_sunbelt", "num_persons_worked_for_employer", "family_members_under_18",
    "country_of_birth_father", "country_of_birth_mother", "country_of_birth_self", "citizenship",
    "own_business_or_self_employed", "fill_inc_questionnaire_for_veterans_admin",
    "veterans_benefits", "weeks_worked_in_year", "year", "income_class",
)
NUMERIC = ("age", "wage_per_hour", "capital_gains", "capital_losses", "dividends_from_stocks",
           "num_persons_worked_for_employer", "weeks_worked_in_year")
NOT_FEATURES = ("marital_stat", "income_class", "instance_weight")
CATEGORICAL = tuple(c for c in COLUMNS if c not in NUMERIC and c not in NOT_FEATURES)
LABELS = {"income": "income", "never_married": "never_married"}
INCOME_CLASSES = {"- 50000.": 0, "50000+.": 1}

VARIANTS = {
    "census-mtl": None,
    "census-msl": "sex",
}


def describe(name: str = "census-mtl") -> DataSpec:
    scenario = VARIANTS[name]
    what = "two tasks, income > 50K and never married (MMoE, KDD 2018)"
    if scenario:
        what += "; scenario = sex"
    return DataSpec(name=name, categorical=CATEGORICAL, numeric=NUMERIC, labels=dict(LABELS),
                    scenario=scenario, scenario_values=("Female", "Male") if scenario else None,
                    group=None, description=f"UCI Census-Income (KDD), 99,762 rows re-split by md5: {what}.")


def load(name: str = "census-mtl", rows: int | None = None, *, root=None) -> Dataset:
    import io

    import pandas as pd

    from .tables import as_text, bucket_split, data_root, require_dir, require_file

    spec = describe(name)
    folder = require_dir((root or data_root()) / "census_income_kdd", name)
    path = require_file(folder / "census-income.test.gz", name)
    file = str(path)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read file: {exc}", location=Location(file)) from None
    numbered = [(i + 1, line) for i, line in enumerate(text.split("\n")) if line]
    if rows is not None:
        numbered = numbered[:rows]
    if not numbered:
        raise DataError("file is empty", location=Location(file, 1))
    lines = [line for _, line in numbered]
    line_no = np.fromiter((n for n, _ in numbered), dtype=np.int64, count=len(numbered))
    fields = np.fromiter((line.count(",") + 1 for line in lines), dtype=np.int64, count=len(lines))
    wrong = np.flatnonzero(fields != len(COLUMNS))
    if len(wrong):
        i = int(wrong[0])
        raise DataError(f"line has {fields[i]} fields, expected {len(COLUMNS)}",
                        location=Location(file, int(line_no[i])), hint="the UCI file has 42 comma-separated fields")
    body = "\n".join(lines)
    while " ," in body:  # values are padded on both sides of the comma; keep only the value
        body = body.replace(" ,", ",")
    # Type inference is 2x faster than dtype=str here; no census category has a leading zero.
    raw = pd.read_csv(io.StringIO(body), header=None, names=list(COLUMNS), skipinitialspace=True,
                      keep_default_na=False, na_values=["?"])

    def bad(col, mask, message, hint=None):
        i = int(np.flatnonzero(mask)[0])
        return DataError(f"{message.format(value=raw[col].iloc[i])} on line {line_no[i]}",
                         location=Location(file, int(line_no[i])), key=col, hint=hint)

    frame = {}
    for col in CATEGORICAL:
        frame[col] = as_text(raw[col])
    for col in NUMERIC:
        values = raw[col] if pd.api.types.is_numeric_dtype(raw[col]) else pd.to_numeric(raw[col], errors="coerce")
        wrong = (raw[col].notna() & values.isna()).to_numpy()
        if wrong.any():
            raise bad(col, wrong, "expected a number, got '{value}'")
        frame[col] = values.astype("float32")
    income = raw["income_class"].map(INCOME_CLASSES)
    if income.isna().any():
        raise bad("income_class", income.isna().to_numpy(), "unknown income class '{value}'",
                  "expected '- 50000.' or '50000+.'")
    marital = raw["marital_stat"]
    if marital.isna().any():
        raise bad("marital_stat", marital.isna().to_numpy(), "missing marital stat",
                  "never_married is derived from it; every row needs one")
    frame["income"] = income.astype("int64")
    frame["never_married"] = (marital == "Never married").astype("int64")
    out = pd.DataFrame(frame)[list(spec.features) + list(LABELS.values())]
    split = bucket_split(lines)
    return Dataset(spec, out, split, source=file,
                   meta={"split": "md5 of each raw line: b = int(md5(line)[:8], 16) % 10; "
                                  "b <= 7 train, 8 valid, 9 test"})
