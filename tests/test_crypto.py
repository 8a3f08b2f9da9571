import pytest
from sqlalchemy import text

from storage.crypto import DataCipher, DataKeyError, generate_data_key, mask_id_number, mask_phone


def test_roundtrip_and_fresh_nonce():
    c = DataCipher(generate_data_key())
    a, b = c.encrypt("610929196805120018"), c.encrypt("610929196805120018")
    assert a != b and c.decrypt(a) == c.decrypt(b) == "610929196805120018"
    assert c.blind_index("139 1234-0001") == c.blind_index("13912340001")


def test_wrong_key_is_a_clear_error():
    token = DataCipher(generate_data_key()).encrypt("x")
    with pytest.raises(DataKeyError, match="HUINONG_DATA_KEY"):
        DataCipher(generate_data_key()).decrypt(token)


def test_malformed_key():
    with pytest.raises(DataKeyError, match="32 bytes"):
        DataCipher("c2hvcnQ=")


def test_masks():
    assert mask_id_number("612724198305121236") == "612724********1236"
    assert mask_phone("13812345678") == "138****5678"


def test_raw_columns_hold_no_plaintext(db_url, tmp_path):
    from storage import init_db, make_engine, session_scope
    from storage.households import create_household
    from storage.regions import create_region

    engine = make_engine(db_url)
    init_db(engine)
    cipher = DataCipher(generate_data_key())
    with session_scope(engine) as s:
        v = create_region(s, name="龙湾村", level="village")
        create_household(s, cipher, head_name="张三", village_id=v.id, id_number="610929196805120018",
                         phone="13912340001")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM household")).mappings().one()
    dump = " ".join(str(v) for v in row.values())
    assert "610929196805120018" not in dump and "13912340001" not in dump
    assert cipher.decrypt(row["id_number_enc"]) == "610929196805120018"
    engine.dispose()
