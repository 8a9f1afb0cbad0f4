"""Text for synthetic training lines.

`build_ingredients` (needs `faker` and `jieba`, run once on the developer machine) collects word
lists into one small JSON file: Chinese words weighted by jieba's dictionary frequencies, English
words and phrases, Faker zh_CN/en_US names, companies, addresses, jobs. `LineSampler` turns that
file into endless, seeded, varied lines (sentences, invoice fields, amounts, dates, IDs, UI strings),
without any third-party import, so training machines need only this file.
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import string
from pathlib import Path

from ocr_core.charset import Charset
from ocr_core.train import TEXT_CHARSET

CJK_PUNCT = "，。、；：！？"
UI_ZH = ["设置", "登录", "注册", "确定", "取消", "返回", "首页", "我的", "消息", "搜索", "提交订单", "立即购买",
         "加入购物车", "付款", "退出登录", "修改密码", "忘记密码？", "用户名", "手机号", "验证码", "下一步", "完成",
         "编辑", "删除", "保存", "分享", "收藏", "评论", "关注", "更多", "全部", "已完成", "待付款", "待发货",
         "客服", "帮助中心", "隐私政策", "用户协议", "版本更新", "清除缓存", "账号与安全", "通知", "地址管理"]
UI_EN = ["Settings", "Sign in", "Sign up", "Log out", "Cancel", "OK", "Submit", "Next", "Back", "Home",
         "Search", "Add to cart", "Buy now", "Checkout", "Forgot password?", "Username", "Password",
         "Remember me", "Download", "Upload", "Share", "Delete", "Save changes", "Edit profile",
         "Privacy Policy", "Terms of Service", "Help Center", "Notifications", "Order history",
         "Shipping address", "Payment method", "Subtotal", "Tax", "Discount", "Total", "Balance due",
         "Qty", "Unit price", "Amount", "Description", "Item", "Date", "Due date", "Invoice", "Receipt"]
FIELDS_ZH = ["发票号码", "发票代码", "开票日期", "金额", "税额", "价税合计", "合计", "总计", "单价", "数量",
             "名称", "规格型号", "购买方", "销售方", "纳税人识别号", "地址、电话", "开户行及账号", "收款人",
             "复核", "开票人", "订单号", "下单时间", "支付方式", "实付款", "优惠", "运费", "联系电话", "备注",
             "日期", "时间", "车次", "座位号", "检票口", "出发", "到达", "姓名", "身份证号", "有效期"]
FIELDS_EN = ["Invoice No.", "Invoice Date", "Order No.", "Total:", "Subtotal:", "Tax:", "Amount Due:",
             "Date:", "Time:", "Phone:", "Tel:", "Fax:", "Email:", "Account No.", "Ref:", "ID:",
             "Customer:", "Bill To:", "Ship To:", "Flight", "Gate", "Seat", "Boarding", "Terminal",
             "Card No.", "Balance:", "VAT", "Cash", "Change", "Item", "Qty", "Price", "No."]


def build_ingredients(out: Path, charset: Charset, seed: int = 0) -> None:
    """Collect word lists (jieba dictionary, Faker providers) into a gzipped JSON file."""
    import jieba  # noqa: F401  (the dictionary ships inside the package)
    from faker import Faker

    dict_path = Path(jieba.__file__).parent / "dict.txt"
    zh_words: list[tuple[str, int]] = []
    for line in dict_path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and charset.covers(parts[0]) and all("\u4e00" <= c <= "\u9fff" for c in parts[0]):
            zh_words.append((parts[0], int(parts[1])))
    zh_words.sort(key=lambda x: -x[1])
    zh_words = zh_words[:120_000]

    ing: dict[str, list] = {"zh_words": [w for w, _ in zh_words], "zh_freq": [f for _, f in zh_words]}
    fz, fe = Faker("zh_CN"), Faker("en_US")
    Faker.seed(seed)
    n = 6000

    def keep(xs: list[str]) -> list[str]:
        return sorted({x for x in xs if x and charset.covers(x)})

    ing["zh_names"] = keep([fz.name() for _ in range(n)])
    ing["zh_companies"] = keep([fz.company() for _ in range(n)])
    ing["zh_addresses"] = keep([fz.address().replace("\n", " ") for _ in range(n)])
    ing["zh_jobs"] = keep([fz.job() for _ in range(2000)])
    ing["en_names"] = keep([fe.name() for _ in range(n)])
    ing["en_companies"] = keep([fe.company() for _ in range(n)])
    ing["en_addresses"] = keep([fe.address().replace("\n", ", ") for _ in range(n)])
    ing["en_jobs"] = keep([fe.job() for _ in range(3000)])
    ing["en_phrases"] = keep([fe.catch_phrase() for _ in range(n)] + [fe.bs() for _ in range(n)])
    ing["en_sentences"] = keep([fe.sentence(nb_words=12) for _ in range(3 * n)]
                               + [fe.paragraph(nb_sentences=2) for _ in range(n)])
    words: set[str] = set()
    for key in ("en_names", "en_companies", "en_addresses", "en_jobs", "en_phrases", "en_sentences"):
        for s in ing[key]:
            words.update(w.strip(string.punctuation) for w in s.split())
    ing["en_words"] = sorted(w for w in words if w.isalpha())
    ing["cities_zh"] = keep([fz.city() for _ in range(2000)])
    ing["cities_en"] = keep([fe.city() for _ in range(3000)])
    with gzip.open(out, "wt", encoding="utf-8") as f:
        json.dump(ing, f, ensure_ascii=False)


class LineSampler:
    """Endless seeded text lines mixing Chinese, English, numbers and document fields."""

    def __init__(self, ingredients: dict, charset: Charset, seed: int) -> None:
        self.ing = ingredients
        self.charset = charset
        self.rng = random.Random(seed)
        # Flatten the frequency distribution (^0.5) so rarer characters still appear often.
        self.zh_weights = [f ** 0.5 for f in ingredients["zh_freq"]]
        self.zh_cum = list(_accumulate(self.zh_weights))
        self.cjk_chars = [c for c in charset.classes[1:] if "\u4e00" <= c <= "\u9fff"]
        self.symbols = [c for c in charset.classes[1:] if not ("\u4e00" <= c <= "\u9fff") and c != " "]
        self.kinds = [
            (self.zh_sentence, 30), (self.en_sentence, 20), (self.field_line, 14), (self.mixed_line, 10),
            (self.entity_line, 9), (self.number_line, 7), (self.random_chars, 5), (self.ui_line, 5),
        ]
        self.kind_cum = list(_accumulate([w for _, w in self.kinds]))

    def __call__(self) -> str:
        for _ in range(20):
            fn = self.rng.choices([k for k, _ in self.kinds], cum_weights=self.kind_cum)[0]
            text = " ".join(fn().split())  # single spaces, trimmed
            if text and self.charset.covers(text):
                return text
        return "0"

    # -- pieces -------------------------------------------------------------------------------
    def zh_word(self) -> str:
        return self.rng.choices(self.ing["zh_words"], cum_weights=self.zh_cum)[0]

    def en_word(self) -> str:
        w = self.rng.choice(self.ing["en_words"])
        r = self.rng.random()
        return w.upper() if r < 0.08 else w.capitalize() if r < 0.25 else w.lower() if r < 0.7 else w

    def amount(self) -> str:
        r = self.rng.random()
        v = self.rng.choice([self.rng.uniform(0, 100), self.rng.uniform(0, 10_000), self.rng.uniform(0, 2e6)])
        s = f"{v:,.2f}" if r < 0.6 else f"{v:.2f}" if r < 0.85 else f"{int(v):,}"
        cur = self.rng.choice(["¥", "$", "￥", "€", "£", "", "", "RMB ", "USD "])
        return cur + s

    def date(self) -> str:
        y, m, d = self.rng.randint(1990, 2035), self.rng.randint(1, 12), self.rng.randint(1, 28)
        months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
        return self.rng.choice([f"{y}-{m:02d}-{d:02d}", f"{y}/{m}/{d}", f"{y}年{m}月{d}日", f"{d:02d}.{m:02d}.{y}",
                                f"{m}/{d}/{y}", f"{months[m - 1]} {d}, {y}",
                                f"{y}-{m:02d}-{d:02d} {self.rng.randint(0,23):02d}:{self.rng.randint(0,59):02d}"])

    def code(self) -> str:
        n = self.rng.randint(4, 18)
        alpha = self.rng.choice([string.digits, string.ascii_uppercase + string.digits,
                                 string.ascii_letters + string.digits, string.ascii_lowercase])
        s = "".join(self.rng.choice(alpha) for _ in range(n))
        if self.rng.random() < 0.3:
            k = self.rng.randint(1, n - 1)
            s = s[:k] + self.rng.choice("-_/.:#") + s[k:]
        return s

    def phone(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return "1" + "".join(self.rng.choice(string.digits) for _ in range(10))
        if r < 0.7:
            return f"({self.rng.randint(200,999)}) {self.rng.randint(200,999)}-{self.rng.randint(0,9999):04d}"
        return f"0{self.rng.randint(10,999)}-{self.rng.randint(1000000,99999999)}"

    # -- line kinds ---------------------------------------------------------------------------
    def zh_sentence(self) -> str:
        n = self.rng.randint(2, 12)
        out = []
        for i in range(n):
            out.append(self.zh_word())
            if i < n - 1 and self.rng.random() < 0.12:
                out.append(self.rng.choice(CJK_PUNCT[:4]))
        if self.rng.random() < 0.5:
            out.append(self.rng.choice("。！？；…"))
        if self.rng.random() < 0.15:
            a, b = self.rng.choice(["“”", "《》", "【】", "「」", "（）", "()", "『』"])  # type: ignore[str-unpack]  # pairs of 2
            k = self.rng.randint(0, len(out) - 1)
            out[k] = a + out[k] + b
        return "".join(out)

    def en_sentence(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            s = self.rng.choice(self.ing["en_sentences"])
            words = s.split()
            if len(words) > 12:
                k = self.rng.randint(0, len(words) - 8)
                words = words[k:k + self.rng.randint(5, 12)]
            return " ".join(words)
        if r < 0.6:
            return self.rng.choice(self.ing["en_phrases"])
        n = self.rng.randint(1, 11)
        words = [self.en_word() for _ in range(n)]
        if self.rng.random() < 0.3:
            words.insert(self.rng.randint(0, n),
                         self.rng.choice([str(self.rng.randint(0, 9999)), self.amount(), self.date()]))
        s = " ".join(words)
        if self.rng.random() < 0.3:
            s += self.rng.choice(".,;:!?")
        if self.rng.random() < 0.1:
            s = self.rng.choice(['"', "'", "("]) + s + self.rng.choice(['"', "'", ")"])
        return s

    def field_line(self) -> str:
        zh = self.rng.random() < 0.55
        name = self.rng.choice(FIELDS_ZH if zh else FIELDS_EN)
        value = self.rng.choice([self.amount, self.date, self.code, self.phone,
                                 lambda: str(self.rng.randint(0, 10 ** self.rng.randint(1, 9)))])()
        sep = self.rng.choice(["：", ":", ": ", " ", "："] if zh else [" ", ": ", " "])
        if name.endswith(":"):
            sep = " "
        line = f"{name}{sep}{value}"
        if self.rng.random() < 0.3:
            other = self.rng.choice(FIELDS_ZH if zh else FIELDS_EN)
            gap = self.rng.choice(["  ", " ", "　"])  # drawn first, as before
            line += gap + f"{other}{sep}{self.rng.choice([self.amount, self.date, self.code])()}"
        return line

    def mixed_line(self) -> str:
        parts = []
        for _ in range(self.rng.randint(2, 6)):
            r = self.rng.random()
            parts.append(self.zh_word() if r < 0.5 else self.en_word() if r < 0.75 else
                         self.rng.choice([self.amount, self.code, self.date, lambda: str(self.rng.randint(0, 999))])())
        # Chinese typesetting often (not always) puts spaces around Latin words.
        joiner = self.rng.choice(["", " "])
        return joiner.join(parts)

    def entity_line(self) -> str:
        key = self.rng.choice(["zh_names", "zh_companies", "zh_addresses", "zh_jobs", "en_names", "en_companies",
                               "en_addresses", "en_jobs", "cities_zh", "cities_en"])
        s = self.rng.choice(self.ing[key])
        if self.rng.random() < 0.3:
            s += self.rng.choice([" ", "  ", " | ", " / "]) + self.rng.choice([self.phone, self.date, self.code])()
        return s

    def number_line(self) -> str:
        fns = [self.amount, self.date, self.code, self.phone,
               lambda: f"{self.rng.randint(0, 100)}%", lambda: f"{self.rng.uniform(-40, 45):.1f}℃",
               lambda: f"{self.rng.randint(1, 999)}.{self.rng.randint(0, 99)}°",
               lambda: f"No.{self.rng.randint(1, 99999)}",
               lambda: f"{self.rng.randint(0,23):02d}:{self.rng.randint(0,59):02d}",
               lambda: (self.rng.choice(["www.", "https://", ""]) + self.code().lower()
                        + self.rng.choice([".com", ".cn", ".org"])),
               lambda: self.code().lower() + "@" + self.rng.choice(["qq.com", "163.com", "gmail.com", "example.com"])]
        return self.rng.choice([" ", "  ", " / "]).join(self.rng.choice(fns)() for _ in range(self.rng.randint(1, 3)))

    def random_chars(self) -> str:
        n = self.rng.randint(2, 14)
        pool = self.cjk_chars if self.rng.random() < 0.75 else self.symbols
        pool = pool or self.symbols or [" "]  # a charset without CJK (tests, Latin-only models)
        return "".join(self.rng.choice(pool) for _ in range(n))

    def ui_line(self) -> str:
        if self.rng.random() < 0.5:
            items = self.rng.sample(UI_ZH, self.rng.randint(1, 4))
        else:
            items = self.rng.sample(UI_EN, self.rng.randint(1, 4))
        return self.rng.choice(["  ", " ", "   "]).join(items)


def _accumulate(xs: list[float]) -> list[float]:
    out, s = [], 0.0
    for x in xs:
        s += x
        out.append(s)
    return out


def load_ingredients(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="build the corpus ingredients file")
    p.add_argument("--charset", type=Path, default=TEXT_CHARSET)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--show", type=int, default=0, help="print N sample lines after building")
    args = p.parse_args(argv)
    cs = Charset.from_file(args.charset)
    if not args.out.exists():
        build_ingredients(args.out, cs)
    if args.show:
        s = LineSampler(load_ingredients(args.out), cs, seed=1)
        for _ in range(args.show):
            print(s())


if __name__ == "__main__":
    main()
