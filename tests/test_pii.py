"""ID numbers and phones in free text: found, validated, masked, and kept out of logs.

The ID numbers here are invented; their check characters were computed with the ISO 7064
MOD 11-2 rule that :func:`handlers.pii.valid_id_number` implements.
"""

from __future__ import annotations

import io
import logging

import pytest

from handlers.pii import PII, PiiMaskingFilter, find_pii, mask_pii, valid_id_number

ID_X = "61272419800101123X"  # check character X
ID_4 = "500233197512034414"
ID_6 = "140102199203150026"
BAD_CHECK = "612724198001011236"  # 17 good digits, wrong check character


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (ID_X, True),
        (ID_X.lower(), True),
        (ID_4, True),
        (ID_6, True),
        (BAD_CHECK, False),
        ("61272419800101123", False),  # 17 characters
        ("6127241980010112345", False),  # 19 characters
        ("61272419800101123Y", False),
    ],
)
def test_valid_id_number(value: str, valid: bool) -> None:
    assert valid_id_number(value) is valid


@pytest.mark.parametrize(
    ("text", "ids", "phones"),
    [
        (f"身份证{ID_X}，电话13812345678", [ID_X], ["13812345678"]),
        (f"身份证号{ID_X.lower()}", [ID_X], []),  # trailing x accepted, reported upper-case
        (f"我的身份证是 {ID_4} 手机 139-1234-5678", [ID_4], ["13912345678"]),
        ("电话 138 1234 5678", [], ["13812345678"]),
        ("电话+86 158-0000-1111", [], ["15800001111"]),
        ("电话８６１３９１２３４５６７８", [], ["13912345678"]),  # full-width digits, 86 prefix
        ("身份证 140102 19920315 0026", [ID_6], []),  # grouped 6-8-4
        (f"{ID_4}和{ID_6}", [ID_4, ID_6], []),
        (f"{BAD_CHECK}", [], []),  # checksum fails: not an ID
        ("12345678901", [], []),  # not a mobile (second digit 2)
        ("座机029-88886666", [], []),  # landline, not a mainland mobile
        ("138123456789", [], []),  # 12 digits: no phone inside a longer number
        ("订单号6138123456789", [], []),
        ("家里三口人 去年收入两万", [], []),
        (f"重复 13812345678 13812345678 {ID_X} {ID_X}", [ID_X], ["13812345678"]),
    ],
)
def test_find_pii(text: str, ids: list[str], phones: list[str]) -> None:
    assert find_pii(text) == PII(id_numbers=ids, phones=phones)


def test_phone_inside_an_id_is_not_a_phone() -> None:
    # 140102199203150026 contains "19920315002"; it must not be reported as a phone.
    assert find_pii(ID_6).phones == []


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"身份证{ID_X} 电话13812345678", "身份证612724********123X 电话138****5678"),
        ("电话138-1234-5678，急", "电话138****5678，急"),
        ("电话 138 1234 5678", "电话 138****5678"),
        ("身份证 140102 19920315 0026 谢谢", "身份证 140102********0026 谢谢"),
        # An ID with a typo or a bank card is still personal: masked though not reported.
        (f"身份证{BAD_CHECK}", "身份证612724********1236"),
        ("卡号6222021234567890123", "卡号622202*********0123"),
        ("我爸住院了 押金交不起", "我爸住院了 押金交不起"),
        ("", ""),
    ],
)
def test_mask_pii(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


def test_mask_leaves_no_digits_of_the_middle() -> None:
    masked = mask_pii(f"{ID_4} 15800001111")
    assert "19751203" not in masked and "0000" not in masked.split()[1][3:7]


def test_pii_is_falsy_when_empty() -> None:
    assert not find_pii("没有号码")
    assert find_pii("13812345678")


def _logger_with_filter() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PiiMaskingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_pii.masking")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_logging_filter_masks_message_and_arguments() -> None:
    logger, stream = _logger_with_filter()
    logger.info("report from %s, id %s", "13812345678", ID_X)
    logger.info(f"raw text 电话138 1234 5678 身份证{ID_4}")
    out = stream.getvalue()
    assert "13812345678" not in out and ID_X not in out and ID_4 not in out
    assert "138****5678" in out and "612724********123X" in out and "500233********4414" in out


def test_logging_filter_masks_exception_text() -> None:
    logger, stream = _logger_with_filter()
    try:
        raise ValueError(f"bad phone 13912345678 for {ID_6}")
    except ValueError:
        logger.exception("failed")
    out = stream.getvalue()
    assert "13912345678" not in out and ID_6 not in out
    assert "139****5678" in out and "Traceback" in out


def test_logging_filter_keeps_records_and_plain_messages() -> None:
    logger, stream = _logger_with_filter()
    logger.info("nothing personal %d", 3)
    assert stream.getvalue().strip() == "INFO nothing personal 3"
