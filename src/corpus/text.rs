//! The utterance bank: what a voice assistant hears, built from slot tables and
//! several phrasings per slot filling. Factual questions carry a short reference answer.
//!
//! Every utterance has a `group`: its slot values without the phrasing. Splits are
//! drawn per group (see [`super::split_of`]), so paraphrases of one fact or one
//! command never straddle train and test.

use super::stable_hash;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Question,
    Command,
    Request,
    Dictation,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Question, Kind::Command, Kind::Request, Kind::Dictation];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Question => "question",
            Kind::Command => "command",
            Kind::Request => "request",
            Kind::Dictation => "dictation",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    pub text: String,
    pub kind: Kind,
    pub reference_answer: Option<String>,
    pub group: String,
}

/// Every distinct utterance, in a fixed order (the same on every machine and run).
pub fn utterance_bank() -> Vec<Utterance> {
    let mut bank = Bank::default();
    geography(&mut bank);
    arithmetic(&mut bank);
    calendar_facts(&mut bank);
    colors_and_units(&mut bank);
    people_and_works(&mut bank);
    nature_and_science(&mut bank);
    language_facts(&mut bank);
    open_questions(&mut bank);
    home_commands(&mut bank);
    media_and_communication(&mut bank);
    requests(&mut bank);
    dictation(&mut bank);
    bank.items
}

#[derive(Default)]
struct Bank {
    items: Vec<Utterance>,
    seen: HashSet<String>,
    /// Rotates the first phrasing used from call to call, so every template of a table gets used.
    turn: usize,
}

impl Bank {
    fn add(&mut self, kind: Kind, group: &str, text: &str, answer: Option<&str>) {
        let text = sentence_case(text);
        if self.seen.insert(text.clone()) {
            self.items.push(Utterance {
                text,
                kind,
                reference_answer: answer.map(str::to_string),
                group: group.to_string(),
            });
        }
    }

    /// Adds `count` phrasings of one slot filling, taken in turn from `templates`.
    fn say(
        &mut self,
        kind: Kind,
        group: &str,
        templates: &[&str],
        count: usize,
        slots: &[(&str, &str)],
        answer: Option<&str>,
    ) {
        for i in 0..count.min(templates.len()) {
            let template = templates[(self.turn + i) % templates.len()];
            self.add(kind, group, &fill(template, slots), answer);
        }
        self.turn += 1;
    }

    fn ask(&mut self, group: &str, templates: &[&str], count: usize, slots: &[(&str, &str)], answer: &str) {
        self.say(Kind::Question, group, templates, count, slots, Some(answer));
    }
}

fn fill(template: &str, slots: &[(&str, &str)]) -> String {
    slots.iter().fold(template.to_string(), |t, (name, value)| t.replace(&format!("{{{name}}}"), value))
}

fn sentence_case(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// A fixed pseudo-random subset of a large cross product: keeps about `percent`% of the keys.
fn keep(key: &str, percent: u64) -> bool {
    stable_hash(&["keep", key]) % 100 < percent
}

const CITIES: &[&str] = &[
    "London",
    "Paris",
    "Tokyo",
    "New York",
    "Chicago",
    "Seattle",
    "Boston",
    "Denver",
    "Toronto",
    "Sydney",
    "Berlin",
    "Madrid",
    "Rome",
    "Dublin",
    "Edinburgh",
    "Manchester",
    "Glasgow",
    "Mumbai",
    "Delhi",
    "Singapore",
    "Cairo",
    "Nairobi",
    "Lagos",
    "Lima",
    "Mexico City",
    "Buenos Aires",
    "San Francisco",
    "Los Angeles",
    "Miami",
    "Austin",
    "Atlanta",
    "Vancouver",
    "Montreal",
    "Oslo",
    "Stockholm",
    "Amsterdam",
    "Vienna",
    "Prague",
    "Lisbon",
    "Athens",
];
const DAYS: &[&str] = &["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const ORDINALS: &[&str] = &[
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
    "twelfth",
];
const ROOMS: &[&str] = &[
    "kitchen",
    "living room",
    "bedroom",
    "bathroom",
    "hallway",
    "dining room",
    "office",
    "garage",
    "basement",
    "nursery",
    "guest room",
    "kids' room",
    "study",
    "laundry room",
];
const NAMES: &[&str] = &[
    "Mom", "Dad", "Alice", "Bob", "Grandma", "Sarah", "David", "Maria", "James", "Priya", "Chen", "Fatima", "Olivia",
    "Liam", "Noah", "Emma", "Lucas", "Sofia", "Ahmed", "Yuki", "Carlos", "Hannah", "Oliver", "Zoe", "Ethan", "Amara",
    "Mateo", "Grace", "Daniel", "Aisha",
];
const WHEN: &[&str] =
    &["today", "tomorrow", "tonight", "this weekend", "on Saturday", "on Monday", "this afternoon", "next week"];
const PLACES: &[&str] = &[
    "work",
    "the airport",
    "the train station",
    "the office",
    "the gym",
    "school",
    "the city center",
    "the hospital",
    "the beach",
    "the library",
    "the supermarket",
    "the nearest gas station",
];

fn geography(b: &mut Bank) {
    // (country, capital, continent)
    const COUNTRIES: &[(&str, &str, &str)] = &[
        ("France", "Paris", "Europe"),
        ("Germany", "Berlin", "Europe"),
        ("Italy", "Rome", "Europe"),
        ("Spain", "Madrid", "Europe"),
        ("Portugal", "Lisbon", "Europe"),
        ("Ireland", "Dublin", "Europe"),
        ("the United Kingdom", "London", "Europe"),
        ("Belgium", "Brussels", "Europe"),
        ("the Netherlands", "Amsterdam", "Europe"),
        ("Switzerland", "Bern", "Europe"),
        ("Austria", "Vienna", "Europe"),
        ("Poland", "Warsaw", "Europe"),
        ("the Czech Republic", "Prague", "Europe"),
        ("Hungary", "Budapest", "Europe"),
        ("Greece", "Athens", "Europe"),
        ("Sweden", "Stockholm", "Europe"),
        ("Norway", "Oslo", "Europe"),
        ("Denmark", "Copenhagen", "Europe"),
        ("Finland", "Helsinki", "Europe"),
        ("Iceland", "Reykjavik", "Europe"),
        ("Ukraine", "Kyiv", "Europe"),
        ("Romania", "Bucharest", "Europe"),
        ("Bulgaria", "Sofia", "Europe"),
        ("Serbia", "Belgrade", "Europe"),
        ("Croatia", "Zagreb", "Europe"),
        ("Estonia", "Tallinn", "Europe"),
        ("Latvia", "Riga", "Europe"),
        ("Lithuania", "Vilnius", "Europe"),
        ("Slovakia", "Bratislava", "Europe"),
        ("Slovenia", "Ljubljana", "Europe"),
        ("Egypt", "Cairo", "Africa"),
        ("Kenya", "Nairobi", "Africa"),
        ("Nigeria", "Abuja", "Africa"),
        ("Ghana", "Accra", "Africa"),
        ("Ethiopia", "Addis Ababa", "Africa"),
        ("Morocco", "Rabat", "Africa"),
        ("Senegal", "Dakar", "Africa"),
        ("Uganda", "Kampala", "Africa"),
        ("Algeria", "Algiers", "Africa"),
        ("Tunisia", "Tunis", "Africa"),
        ("Zimbabwe", "Harare", "Africa"),
        ("Tanzania", "Dodoma", "Africa"),
        ("China", "Beijing", "Asia"),
        ("Japan", "Tokyo", "Asia"),
        ("South Korea", "Seoul", "Asia"),
        ("India", "New Delhi", "Asia"),
        ("Pakistan", "Islamabad", "Asia"),
        ("Bangladesh", "Dhaka", "Asia"),
        ("Thailand", "Bangkok", "Asia"),
        ("Vietnam", "Hanoi", "Asia"),
        ("Indonesia", "Jakarta", "Asia"),
        ("the Philippines", "Manila", "Asia"),
        ("Malaysia", "Kuala Lumpur", "Asia"),
        ("Nepal", "Kathmandu", "Asia"),
        ("Iran", "Tehran", "Asia"),
        ("Iraq", "Baghdad", "Asia"),
        ("Saudi Arabia", "Riyadh", "Asia"),
        ("Jordan", "Amman", "Asia"),
        ("Lebanon", "Beirut", "Asia"),
        ("Afghanistan", "Kabul", "Asia"),
        ("Mongolia", "Ulaanbaatar", "Asia"),
        ("Qatar", "Doha", "Asia"),
        ("Kazakhstan", "Astana", "Asia"),
        ("the United States", "Washington, D.C.", "North America"),
        ("Canada", "Ottawa", "North America"),
        ("Mexico", "Mexico City", "North America"),
        ("Cuba", "Havana", "North America"),
        ("Jamaica", "Kingston", "North America"),
        ("Panama", "Panama City", "North America"),
        ("Costa Rica", "San Jose", "North America"),
        ("Brazil", "Brasilia", "South America"),
        ("Argentina", "Buenos Aires", "South America"),
        ("Chile", "Santiago", "South America"),
        ("Peru", "Lima", "South America"),
        ("Colombia", "Bogota", "South America"),
        ("Venezuela", "Caracas", "South America"),
        ("Ecuador", "Quito", "South America"),
        ("Uruguay", "Montevideo", "South America"),
        ("Paraguay", "Asuncion", "South America"),
        ("Australia", "Canberra", "Oceania"),
        ("New Zealand", "Wellington", "Oceania"),
        ("Fiji", "Suva", "Oceania"),
    ];
    const CAPITAL: &[&str] = &[
        "What is the capital of {country}?",
        "What's the capital city of {country}?",
        "Which city is the capital of {country}?",
        "Do you know the capital of {country}?",
        "Tell me the capital of {country}.",
        "What city is the capital of {country}?",
    ];
    const COUNTRY_OF: &[&str] =
        &["{capital} is the capital of which country?", "Which country has {capital} as its capital?"];
    const CONTINENT: &[&str] =
        &["Which continent is {country} in?", "On which continent is {country}?", "What continent is {country} on?"];
    for &(country, capital, continent) in COUNTRIES {
        let slots = [("country", country), ("capital", capital)];
        b.ask(&format!("capital/{country}"), CAPITAL, 3, &slots, capital);
        b.ask(&format!("capital/{country}"), COUNTRY_OF, 1, &slots, country);
        b.ask(&format!("continent/{country}"), CONTINENT, 1, &slots, continent);
    }
    const SUPERLATIVES: &[(&[&str], &str)] = &[
        (&["What is the largest ocean on Earth?", "Which ocean is the biggest?"], "the Pacific Ocean"),
        (&["What is the tallest mountain in the world?", "Which mountain is the highest on Earth?"], "Mount Everest"),
        (&["What is the longest river in Africa?", "Which river is the longest in Africa?"], "the Nile"),
        (&["What is the largest country by area?", "Which country is the biggest in the world?"], "Russia"),
        (&["What is the smallest country in the world?", "Which country is the smallest?"], "Vatican City"),
        (&["How many continents are there?", "How many continents does the Earth have?"], "7"),
        (&["What is the largest hot desert in the world?", "Which desert is the biggest hot desert?"], "the Sahara"),
        (&["What is the largest continent?", "Which continent is the biggest?"], "Asia"),
        (&["How many oceans are there on Earth?", "How many oceans are there?"], "5"),
        (&["Which river flows through London?", "What river runs through London?"], "the Thames"),
        (&["Which river flows through Paris?", "What river runs through Paris?"], "the Seine"),
        (&["What is the largest lake in Africa?", "Which lake is the biggest in Africa?"], "Lake Victoria"),
        (&["In which country are the pyramids of Giza?", "Where are the pyramids of Giza?"], "Egypt"),
        (&["In which city is the Eiffel Tower?", "Where is the Eiffel Tower?"], "Paris"),
        (&["In which city is the Colosseum?", "Where is the Colosseum?"], "Rome"),
        (&["In which country is Machu Picchu?", "Where is Machu Picchu?"], "Peru"),
        (&["In which city is the Statue of Liberty?", "Where is the Statue of Liberty?"], "New York"),
    ];
    for (i, (phrasings, answer)) in SUPERLATIVES.iter().enumerate() {
        b.ask(&format!("geo/{i}"), phrasings, 2, &[], answer);
    }
}

fn arithmetic(b: &mut Bank) {
    const PLUS: &[&str] = &[
        "What is {a} plus {b}?",
        "What's {a} plus {b}?",
        "How much is {a} plus {b}?",
        "What do you get if you add {a} and {b}?",
        "Add {a} and {b}.",
    ];
    const MINUS: &[&str] = &[
        "What is {a} minus {b}?",
        "What's {a} take away {b}?",
        "How much is {a} minus {b}?",
        "Subtract {b} from {a}.",
    ];
    const TIMES: &[&str] = &[
        "What is {a} times {b}?",
        "What's {a} multiplied by {b}?",
        "How much is {a} times {b}?",
        "Multiply {a} by {b}.",
    ];
    const DIVIDE: &[&str] =
        &["What is {a} divided by {b}?", "What's {a} divided by {b}?", "How many times does {b} go into {a}?"];
    for a in 2..=30u32 {
        for c in 2..=30u32 {
            let (sa, sc) = (a.to_string(), c.to_string());
            let slots = [("a", sa.as_str()), ("b", sc.as_str())];
            if keep(&format!("plus/{a}/{c}"), 12) {
                b.ask(&format!("plus/{a}/{c}"), PLUS, 1, &slots, &(a + c).to_string());
            }
            if a > c && keep(&format!("minus/{a}/{c}"), 14) {
                b.ask(&format!("minus/{a}/{c}"), MINUS, 1, &slots, &(a - c).to_string());
            }
            if a <= 12 && c <= 12 && keep(&format!("times/{a}/{c}"), 45) {
                b.ask(&format!("times/{a}/{c}"), TIMES, 1, &slots, &(a * c).to_string());
            }
            if a <= 12 && c <= 12 && keep(&format!("divide/{a}/{c}"), 40) {
                let product = (a * c).to_string();
                b.ask(&format!("divide/{a}/{c}"), DIVIDE, 1, &[("a", &product), ("b", &sc)], &sa);
            }
        }
    }
    for n in 2..=20u32 {
        let s = n.to_string();
        b.ask(
            &format!("squared/{n}"),
            &["What is {n} squared?", "What's the square of {n}?"],
            1,
            &[("n", &s)],
            &(n * n).to_string(),
        );
        if n <= 15 {
            let square = (n * n).to_string();
            b.ask(
                &format!("root/{n}"),
                &["What is the square root of {n}?", "What's the square root of {n}?"],
                1,
                &[("n", &square)],
                &s,
            );
        }
    }
    for n in (10..=200u32).step_by(6) {
        let s = n.to_string();
        b.ask(
            &format!("half/{n}"),
            &["What is half of {n}?", "What's half of {n}?", "What is {n} divided by 2?"],
            1,
            &[("n", &s)],
            &(n / 2).to_string(),
        );
    }
    for p in [10u32, 20, 25, 50, 75] {
        for n in [20u32, 40, 60, 80, 100, 200, 400, 1000] {
            if (p * n) % 100 == 0 && keep(&format!("percent/{p}/{n}"), 70) {
                let (sp, sn) = (p.to_string(), n.to_string());
                b.ask(
                    &format!("percent/{p}/{n}"),
                    &["What is {p} percent of {n}?", "What's {p} percent of {n}?"],
                    1,
                    &[("p", &sp), ("n", &sn)],
                    &(p * n / 100).to_string(),
                );
            }
        }
    }
    for n in 1..=40u32 {
        let s = n.to_string();
        let even = if n % 2 == 0 { "Yes" } else { "No" };
        b.ask(&format!("even/{n}"), &["Is {n} an even number?", "Is {n} even?"], 1, &[("n", &s)], even);
        if n >= 2 {
            let prime = if (2..n).all(|d| n % d != 0) { "Yes" } else { "No" };
            b.ask(&format!("prime/{n}"), &["Is {n} a prime number?", "Is {n} prime?"], 1, &[("n", &s)], prime);
        }
    }
    for (a, c) in [
        (17u32, 71u32),
        (45, 54),
        (99, 101),
        (250, 205),
        (12, 21),
        (38, 83),
        (64, 46),
        (120, 102),
        (333, 303),
        (59, 95),
        (18, 81),
        (700, 70),
    ] {
        let (sa, sc) = (a.to_string(), c.to_string());
        b.ask(
            &format!("bigger/{a}/{c}"),
            &["Which is bigger, {a} or {b}?", "Which number is larger, {a} or {b}?"],
            1,
            &[("a", &sa), ("b", &sc)],
            &a.max(c).to_string(),
        );
    }
    for n in [9u32, 19, 29, 49, 99, 199, 999, 1999, 14, 66] {
        let s = n.to_string();
        b.ask(
            &format!("next/{n}"),
            &["What number comes after {n}?", "What comes after {n} when counting?"],
            1,
            &[("n", &s)],
            &(n + 1).to_string(),
        );
    }
}

fn calendar_facts(b: &mut Bank) {
    let next = |list: &[&'static str], i: usize| list[(i + 1) % list.len()];
    let prev = |list: &[&'static str], i: usize| list[(i + list.len() - 1) % list.len()];
    for (i, &day) in DAYS.iter().enumerate() {
        let slots = [("d", day)];
        b.ask(
            &format!("day-after/{day}"),
            &["What day comes after {d}?", "Which day is after {d}?", "If today is {d}, what day is tomorrow?"],
            2,
            &slots,
            next(DAYS, i),
        );
        b.ask(
            &format!("day-before/{day}"),
            &["What day comes before {d}?", "Which day is before {d}?", "If today is {d}, what day was yesterday?"],
            2,
            &slots,
            prev(DAYS, i),
        );
    }
    const SEASONS: [&str; 12] = [
        "winter", "winter", "spring", "spring", "spring", "summer", "summer", "summer", "autumn", "autumn", "autumn",
        "winter",
    ];
    const MONTH_DAYS: [&str; 12] =
        ["31", "28, or 29 in a leap year", "31", "30", "31", "30", "31", "31", "30", "31", "30", "31"];
    for (i, &month) in MONTHS.iter().enumerate() {
        let number = (i + 1).to_string();
        let slots = [("m", month), ("o", ORDINALS[i]), ("n", number.as_str())];
        b.ask(
            &format!("month-after/{month}"),
            &["What month comes after {m}?", "Which month follows {m}?"],
            1,
            &slots,
            next(MONTHS, i),
        );
        b.ask(
            &format!("month-before/{month}"),
            &["What month comes before {m}?", "Which month is before {m}?"],
            1,
            &slots,
            prev(MONTHS, i),
        );
        b.ask(
            &format!("month-days/{month}"),
            &["How many days are there in {m}?", "How many days does {m} have?"],
            2,
            &slots,
            MONTH_DAYS[i],
        );
        b.ask(
            &format!("month-number/{month}"),
            &["What is the {o} month of the year?", "Which month is month number {n}?"],
            1,
            &slots,
            month,
        );
        b.ask(
            &format!("month-order/{month}"),
            &["What number month is {m}?", "Which month of the year is {m}?"],
            1,
            &slots,
            &number,
        );
        b.ask(
            &format!("season/{month}"),
            &["Which season is {m} in the northern hemisphere?", "In the northern hemisphere, what season is {m}?"],
            1,
            &slots,
            SEASONS[i],
        );
    }
    const HOLIDAYS: &[(&str, &str)] = &[
        ("Christmas Day", "December 25"),
        ("New Year's Day", "January 1"),
        ("Halloween", "October 31"),
        ("Valentine's Day", "February 14"),
        ("Independence Day in the United States", "July 4"),
        ("New Year's Eve", "December 31"),
        ("Bastille Day", "July 14"),
        ("Saint Patrick's Day", "March 17"),
    ];
    for &(holiday, date) in HOLIDAYS {
        b.ask(
            &format!("holiday/{holiday}"),
            &["When is {h}?", "What date is {h}?", "What's the date of {h}?"],
            2,
            &[("h", holiday)],
            date,
        );
    }
}

fn colors_and_units(b: &mut Bank) {
    const MIXES: &[(&str, &str, &str)] = &[
        ("blue", "yellow", "green"),
        ("red", "yellow", "orange"),
        ("red", "blue", "purple"),
        ("red", "white", "pink"),
        ("black", "white", "gray"),
        ("blue", "white", "light blue"),
        ("red", "green", "brown"),
        ("yellow", "white", "cream"),
    ];
    for &(x, y, answer) in MIXES {
        let slots = [("x", x), ("y", y)];
        b.ask(
            &format!("mix/{x}/{y}"),
            &[
                "What color do you get when you mix {x} and {y}?",
                "What do {x} and {y} make when you mix them?",
                "If I mix {y} paint with {x} paint, what color do I get?",
            ],
            2,
            &slots,
            answer,
        );
    }
    const THINGS: &[(&str, &str)] = &[
        ("the sky on a clear day", "blue"),
        ("grass", "green"),
        ("snow", "white"),
        ("a ripe banana", "yellow"),
        ("a ripe tomato", "red"),
        ("coal", "black"),
        ("a polar bear", "white"),
        ("a flamingo", "pink"),
        ("milk chocolate", "brown"),
        ("a lemon", "yellow"),
        ("a fire engine", "red"),
        ("a crow", "black"),
        ("an emerald", "green"),
        ("a sapphire", "blue"),
        ("a ruby", "red"),
        ("milk", "white"),
        ("a carrot", "orange"),
        ("an eggplant", "purple"),
        ("a pumpkin", "orange"),
        ("a strawberry", "red"),
        ("a cucumber", "green"),
        ("a zebra", "black and white"),
        ("a panda", "black and white"),
        ("a lime", "green"),
        ("the middle light of a traffic light", "amber"),
    ];
    for &(thing, color) in THINGS {
        b.ask(
            &format!("color/{thing}"),
            &["What color is {t}?", "Tell me what color {t} is.", "What is the color of {t}?"],
            2,
            &[("t", thing)],
            color,
        );
    }
    b.ask("rainbow", &["How many colors are there in a rainbow?", "How many colors does a rainbow have?"], 2, &[], "7");
    // (smaller unit, larger unit with its article, how many)
    const UNITS: &[(&str, &str, &str)] = &[
        ("centimeters", "a meter", "100"),
        ("millimeters", "a centimeter", "10"),
        ("meters", "a kilometer", "1000"),
        ("grams", "a kilogram", "1000"),
        ("milliliters", "a liter", "1000"),
        ("seconds", "a minute", "60"),
        ("minutes", "an hour", "60"),
        ("hours", "a day", "24"),
        ("days", "a week", "7"),
        ("weeks", "a year", "52"),
        ("months", "a year", "12"),
        ("days", "a year", "365"),
        ("days", "a leap year", "366"),
        ("years", "a decade", "10"),
        ("years", "a century", "100"),
        ("years", "a millennium", "1000"),
        ("inches", "a foot", "12"),
        ("feet", "a yard", "3"),
        ("yards", "a mile", "1760"),
        ("ounces", "a pound", "16"),
        ("pounds", "a stone", "14"),
        ("pints", "a quart", "2"),
        ("quarts", "a gallon", "4"),
        ("cents", "a dollar", "100"),
        ("eggs", "a dozen", "12"),
        ("minutes", "a quarter of an hour", "15"),
        ("minutes", "half an hour", "30"),
        ("players", "a soccer team", "11"),
        ("cards", "a standard deck", "52"),
        ("squares", "a chessboard", "64"),
    ];
    for &(small, large, n) in UNITS {
        let slots = [("s", small), ("l", large)];
        b.ask(
            &format!("units/{small}/{large}"),
            &["How many {s} are in {l}?", "How many {s} are there in {l}?", "How many {s} make {l}?"],
            2,
            &slots,
            n,
        );
    }
    // (smaller unit, larger unit, factor, largest multiple)
    const SCALED: &[(&str, &str, u32, u32)] = &[
        ("minutes", "hours", 60, 12),
        ("seconds", "minutes", 60, 10),
        ("hours", "days", 24, 7),
        ("days", "weeks", 7, 10),
        ("centimeters", "meters", 100, 10),
        ("grams", "kilograms", 1000, 5),
        ("months", "years", 12, 10),
        ("inches", "feet", 12, 6),
    ];
    for &(small, large, factor, most) in SCALED {
        for n in 2..=most {
            let s = n.to_string();
            let slots = [("s", small), ("l", large), ("n", s.as_str())];
            b.ask(
                &format!("scaled/{small}/{n}"),
                &["How many {s} are in {n} {l}?", "How many {s} are there in {n} {l}?", "Convert {n} {l} to {s}."],
                1,
                &slots,
                &(n * factor).to_string(),
            );
        }
    }
    const SIDES: &[(&str, &str)] = &[
        ("triangle", "3"),
        ("square", "4"),
        ("rectangle", "4"),
        ("pentagon", "5"),
        ("hexagon", "6"),
        ("heptagon", "7"),
        ("octagon", "8"),
        ("nonagon", "9"),
        ("decagon", "10"),
    ];
    for &(shape, n) in SIDES {
        b.ask(
            &format!("sides/{shape}"),
            &["How many sides does a {s} have?", "How many corners does a {s} have?", "How many sides has a {s} got?"],
            2,
            &[("s", shape)],
            n,
        );
    }
}

fn people_and_works(b: &mut Bank) {
    const BOOKS: &[(&str, &str)] = &[
        ("Hamlet", "William Shakespeare"),
        ("Romeo and Juliet", "William Shakespeare"),
        ("Macbeth", "William Shakespeare"),
        ("Pride and Prejudice", "Jane Austen"),
        ("Emma", "Jane Austen"),
        ("Great Expectations", "Charles Dickens"),
        ("Oliver Twist", "Charles Dickens"),
        ("A Christmas Carol", "Charles Dickens"),
        ("1984", "George Orwell"),
        ("Animal Farm", "George Orwell"),
        ("War and Peace", "Leo Tolstoy"),
        ("Anna Karenina", "Leo Tolstoy"),
        ("Crime and Punishment", "Fyodor Dostoevsky"),
        ("Moby Dick", "Herman Melville"),
        ("The Great Gatsby", "F. Scott Fitzgerald"),
        ("To Kill a Mockingbird", "Harper Lee"),
        ("The Odyssey", "Homer"),
        ("The Iliad", "Homer"),
        ("Don Quixote", "Miguel de Cervantes"),
        ("Frankenstein", "Mary Shelley"),
        ("Dracula", "Bram Stoker"),
        ("Jane Eyre", "Charlotte Bronte"),
        ("Wuthering Heights", "Emily Bronte"),
        ("The Old Man and the Sea", "Ernest Hemingway"),
        ("Ulysses", "James Joyce"),
        ("The Hobbit", "J. R. R. Tolkien"),
        ("The Lord of the Rings", "J. R. R. Tolkien"),
        ("Harry Potter and the Philosopher's Stone", "J. K. Rowling"),
        ("Alice's Adventures in Wonderland", "Lewis Carroll"),
        ("The Adventures of Tom Sawyer", "Mark Twain"),
        ("Huckleberry Finn", "Mark Twain"),
        ("The Catcher in the Rye", "J. D. Salinger"),
        ("Brave New World", "Aldous Huxley"),
        ("Les Miserables", "Victor Hugo"),
        ("The Divine Comedy", "Dante Alighieri"),
        ("On the Origin of Species", "Charles Darwin"),
        ("A Brief History of Time", "Stephen Hawking"),
        ("The Call of the Wild", "Jack London"),
        ("Treasure Island", "Robert Louis Stevenson"),
        ("The Jungle Book", "Rudyard Kipling"),
        ("Little Women", "Louisa May Alcott"),
        ("Gulliver's Travels", "Jonathan Swift"),
        ("Robinson Crusoe", "Daniel Defoe"),
        ("The Time Machine", "H. G. Wells"),
        ("The War of the Worlds", "H. G. Wells"),
        ("The Hound of the Baskervilles", "Arthur Conan Doyle"),
        ("The Little Prince", "Antoine de Saint-Exupery"),
        ("Charlotte's Web", "E. B. White"),
        ("The Canterbury Tales", "Geoffrey Chaucer"),
        ("Paradise Lost", "John Milton"),
        ("The Raven", "Edgar Allan Poe"),
        ("Of Mice and Men", "John Steinbeck"),
        ("The Grapes of Wrath", "John Steinbeck"),
        ("One Hundred Years of Solitude", "Gabriel Garcia Marquez"),
        ("The Art of War", "Sun Tzu"),
    ];
    const WROTE: &[&str] =
        &["Who wrote {t}?", "Who is the author of {t}?", "Who was {t} written by?", "Can you tell me who wrote {t}?"];
    for &(title, author) in BOOKS {
        b.ask(&format!("author/{title}"), WROTE, 2, &[("t", title)], author);
    }
    // (phrasings, answer)
    const WHO: &[(&[&str], &str)] = &[
        (&["Who painted the Mona Lisa?", "Which artist painted the Mona Lisa?"], "Leonardo da Vinci"),
        (&["Who painted The Starry Night?", "Which artist painted The Starry Night?"], "Vincent van Gogh"),
        (&["Who painted The Last Supper?", "Which artist painted The Last Supper?"], "Leonardo da Vinci"),
        (&["Who painted Guernica?", "Which artist painted Guernica?"], "Pablo Picasso"),
        (&["Who painted The Scream?", "Which artist painted The Scream?"], "Edvard Munch"),
        (
            &["Who painted Girl with a Pearl Earring?", "Which artist painted Girl with a Pearl Earring?"],
            "Johannes Vermeer",
        ),
        (&["Who composed The Magic Flute?", "Which composer wrote The Magic Flute?"], "Wolfgang Amadeus Mozart"),
        (&["Who composed the Moonlight Sonata?", "Which composer wrote the Moonlight Sonata?"], "Ludwig van Beethoven"),
        (&["Who composed The Four Seasons?", "Which composer wrote The Four Seasons?"], "Antonio Vivaldi"),
        (&["Who composed Swan Lake?", "Which composer wrote Swan Lake?"], "Pyotr Ilyich Tchaikovsky"),
        (&["Who composed The Nutcracker?", "Which composer wrote The Nutcracker?"], "Pyotr Ilyich Tchaikovsky"),
        (&["Who discovered penicillin?", "Which scientist discovered penicillin?"], "Alexander Fleming"),
        (&["Who invented the telephone?", "Who is credited with inventing the telephone?"], "Alexander Graham Bell"),
        (
            &["Who developed the theory of relativity?", "Which scientist came up with the theory of relativity?"],
            "Albert Einstein",
        ),
        (
            &["Who formulated the laws of motion?", "Which scientist described the three laws of motion?"],
            "Isaac Newton",
        ),
        (&["Who was the first person to walk on the moon?", "Who first walked on the moon?"], "Neil Armstrong"),
        (
            &["Who was the first president of the United States?", "Who was America's first president?"],
            "George Washington",
        ),
        (&["Who was the first person in space?", "Who was the first human to travel into space?"], "Yuri Gagarin"),
        (&["Who discovered radium?", "Which scientist discovered radium?"], "Marie and Pierre Curie"),
        (
            &[
                "Who proposed the theory of evolution by natural selection?",
                "Whose theory is evolution by natural selection?",
            ],
            "Charles Darwin",
        ),
        (
            &["Who painted the ceiling of the Sistine Chapel?", "Which artist painted the Sistine Chapel ceiling?"],
            "Michelangelo",
        ),
        (&["Who sculpted David in Florence?", "Which artist made the statue of David in Florence?"], "Michelangelo"),
        (&["Who wrote the music for the Ode to Joy?", "Which composer wrote the Ode to Joy?"], "Ludwig van Beethoven"),
        (&["Who invented the printing press?", "Who built the first European printing press?"], "Johannes Gutenberg"),
    ];
    for (i, (phrasings, answer)) in WHO.iter().enumerate() {
        b.ask(&format!("who/{i}"), phrasings, 2, &[], answer);
    }
}

fn nature_and_science(b: &mut Bank) {
    const LEGS: &[(&str, &str)] = &[
        ("a spider", "8"),
        ("an insect", "6"),
        ("a dog", "4"),
        ("a bird", "2"),
        ("an octopus", "8"),
        ("an ant", "6"),
        ("a horse", "4"),
        ("a chicken", "2"),
        ("a crab", "10"),
        ("a beetle", "6"),
        ("a kangaroo", "2"),
        ("a cat", "4"),
    ];
    for &(animal, n) in LEGS {
        b.ask(
            &format!("legs/{animal}"),
            &["How many legs does {a} have?", "How many legs has {a} got?"],
            2,
            &[("a", animal)],
            n,
        );
    }
    const SOUNDS: &[(&str, &str)] = &[
        ("cow", "moo"),
        ("dog", "woof"),
        ("cat", "meow"),
        ("duck", "quack"),
        ("sheep", "baa"),
        ("pig", "oink"),
        ("horse", "neigh"),
        ("lion", "roar"),
        ("owl", "hoot"),
        ("snake", "hiss"),
        ("rooster", "cock-a-doodle-doo"),
        ("frog", "ribbit"),
        ("donkey", "hee-haw"),
        ("mouse", "squeak"),
        ("bee", "buzz"),
    ];
    for &(animal, sound) in SOUNDS {
        b.ask(
            &format!("sound/{animal}"),
            &["What sound does a {a} make?", "What noise does a {a} make?", "What does a {a} say?"],
            2,
            &[("a", animal)],
            sound,
        );
    }
    const BABIES: &[(&str, &str)] = &[
        ("cow", "a calf"),
        ("dog", "a puppy"),
        ("cat", "a kitten"),
        ("sheep", "a lamb"),
        ("horse", "a foal"),
        ("goat", "a kid"),
        ("frog", "a tadpole"),
        ("kangaroo", "a joey"),
        ("bear", "a cub"),
        ("lion", "a cub"),
        ("duck", "a duckling"),
        ("goose", "a gosling"),
        ("swan", "a cygnet"),
        ("pig", "a piglet"),
        ("deer", "a fawn"),
        ("owl", "an owlet"),
    ];
    for &(animal, baby) in BABIES {
        b.ask(
            &format!("baby/{animal}"),
            &["What is a baby {a} called?", "What do you call a baby {a}?"],
            2,
            &[("a", animal)],
            baby,
        );
    }
    const ELEMENTS: &[(&str, &str)] = &[
        ("gold", "Au"),
        ("silver", "Ag"),
        ("iron", "Fe"),
        ("oxygen", "O"),
        ("hydrogen", "H"),
        ("carbon", "C"),
        ("sodium", "Na"),
        ("potassium", "K"),
        ("helium", "He"),
        ("nitrogen", "N"),
        ("copper", "Cu"),
        ("lead", "Pb"),
        ("calcium", "Ca"),
        ("zinc", "Zn"),
        ("tin", "Sn"),
        ("mercury", "Hg"),
        ("uranium", "U"),
        ("neon", "Ne"),
        ("sulfur", "S"),
        ("chlorine", "Cl"),
    ];
    for &(element, symbol) in ELEMENTS {
        b.ask(
            &format!("element/{element}"),
            &["What is the chemical symbol for {e}?", "What's the symbol for {e} on the periodic table?"],
            2,
            &[("e", element)],
            symbol,
        );
    }
    const PLANETS: [&str; 8] = ["Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"];
    for (i, planet) in PLANETS.iter().enumerate() {
        b.ask(
            &format!("planet/{planet}"),
            &["Which planet is {o} from the sun?", "What is the {o} planet from the sun?"],
            1,
            &[("o", ORDINALS[i])],
            planet,
        );
    }
    const FACTS: &[(&[&str], &str)] = &[
        (&["What is the largest planet in the solar system?", "Which planet is the biggest?"], "Jupiter"),
        (&["What is the smallest planet in the solar system?", "Which planet is the smallest?"], "Mercury"),
        (&["Which planet is known as the red planet?", "What is the red planet called?"], "Mars"),
        (&["Which planet has the most famous rings?", "What planet is famous for its rings?"], "Saturn"),
        (&["How many planets are in the solar system?", "How many planets orbit the sun?"], "8"),
        (&["What is the closest star to Earth?", "Which star is nearest to the Earth?"], "the Sun"),
        (&["What is the largest animal on Earth?", "Which animal is the biggest in the world?"], "the blue whale"),
        (&["What is the fastest land animal?", "Which land animal is the fastest?"], "the cheetah"),
        (&["What is the tallest animal?", "Which animal is the tallest in the world?"], "the giraffe"),
        (&["What is the largest bird?", "Which bird is the biggest?"], "the ostrich"),
        (
            &["At what temperature does water boil?", "What is the boiling point of water in Celsius?"],
            "100 degrees Celsius",
        ),
        (
            &["At what temperature does water freeze?", "What is the freezing point of water in Celsius?"],
            "0 degrees Celsius",
        ),
        (&["How many bones are in the adult human body?", "How many bones does an adult have?"], "206"),
        (&["How many teeth does an adult usually have?", "How many adult teeth do people have?"], "32"),
        (&["How many hearts does an octopus have?", "How many hearts has an octopus got?"], "3"),
        (
            &["What gas do plants absorb from the air?", "Which gas do plants take in for photosynthesis?"],
            "carbon dioxide",
        ),
        (&["What gas do humans need to breathe?", "Which gas do we breathe in to live?"], "oxygen"),
        (&["What do bees make?", "What food do bees produce?"], "honey"),
        (&["What is H2O better known as?", "What is the common name for H2O?"], "water"),
        (&["What is the hardest natural material?", "Which natural substance is the hardest?"], "diamond"),
        (
            &["What is the largest organ of the human body?", "Which organ is the biggest in the human body?"],
            "the skin",
        ),
        (&["Which organ pumps blood around the body?", "What pumps blood through the body?"], "the heart"),
        (
            &[
                "How many minutes does light take to reach Earth from the sun?",
                "How long does sunlight take to reach Earth?",
            ],
            "about 8 minutes",
        ),
        (&["What do caterpillars turn into?", "What does a caterpillar become?"], "butterflies or moths"),
        (&["What is the main ingredient in guacamole?", "What is guacamole made from?"], "avocado"),
        (&["What is the main ingredient of hummus?", "What is hummus made from?"], "chickpeas"),
        (
            &["Which animal is known as the king of the jungle?", "What animal is called the king of the jungle?"],
            "the lion",
        ),
        (&["What do pandas mostly eat?", "What is the main food of a panda?"], "bamboo"),
        (&["How many strings does a standard guitar have?", "How many strings are on a normal guitar?"], "6"),
        (&["How many keys does a standard piano have?", "How many keys are on a full piano?"], "88"),
        (
            &[
                "How many players are on a basketball team on the court?",
                "How many basketball players per team are on the court?",
            ],
            "5",
        ),
        (
            &["How often are the Summer Olympics held?", "How many years are there between Summer Olympics?"],
            "every 4 years",
        ),
    ];
    for (i, (phrasings, answer)) in FACTS.iter().enumerate() {
        b.ask(&format!("fact/{i}"), phrasings, 2, &[], answer);
    }
    const OPPOSITES: &[(&str, &str)] = &[
        ("hot", "cold"),
        ("big", "small"),
        ("fast", "slow"),
        ("happy", "sad"),
        ("up", "down"),
        ("early", "late"),
        ("heavy", "light"),
        ("open", "closed"),
        ("full", "empty"),
        ("old", "young"),
        ("tall", "short"),
        ("rich", "poor"),
        ("loud", "quiet"),
        ("wet", "dry"),
        ("hard", "soft"),
        ("thick", "thin"),
        ("strong", "weak"),
        ("true", "false"),
        ("left", "right"),
        ("north", "south"),
        ("east", "west"),
        ("win", "lose"),
        ("buy", "sell"),
        ("push", "pull"),
        ("day", "night"),
        ("above", "below"),
        ("cheap", "expensive"),
        ("clean", "dirty"),
        ("remember", "forget"),
        ("begin", "end"),
    ];
    for &(x, y) in OPPOSITES {
        for (word, answer) in [(x, y), (y, x)] {
            b.ask(
                &format!("opposite/{word}"),
                &[
                    "What is the opposite of {w}?",
                    "What's the opposite of {w}?",
                    "What word means the opposite of {w}?",
                ],
                1,
                &[("w", word)],
                answer,
            );
        }
    }
}

fn language_facts(b: &mut Bank) {
    const CURRENCIES: &[(&str, &str)] = &[
        ("Japan", "the yen"),
        ("the United Kingdom", "the pound sterling"),
        ("the United States", "the US dollar"),
        ("India", "the Indian rupee"),
        ("China", "the yuan"),
        ("Mexico", "the Mexican peso"),
        ("Russia", "the ruble"),
        ("Switzerland", "the Swiss franc"),
        ("Germany", "the euro"),
        ("France", "the euro"),
        ("Italy", "the euro"),
        ("Spain", "the euro"),
        ("Brazil", "the real"),
        ("South Africa", "the rand"),
        ("South Korea", "the won"),
        ("Sweden", "the Swedish krona"),
        ("Norway", "the Norwegian krone"),
        ("Denmark", "the Danish krone"),
        ("Poland", "the zloty"),
        ("Turkey", "the Turkish lira"),
        ("Canada", "the Canadian dollar"),
        ("Australia", "the Australian dollar"),
        ("Thailand", "the baht"),
        ("Egypt", "the Egyptian pound"),
        ("Vietnam", "the dong"),
        ("Indonesia", "the rupiah"),
    ];
    for &(country, currency) in CURRENCIES {
        b.ask(
            &format!("currency/{country}"),
            &["What currency is used in {c}?", "What is the currency of {c}?", "What money do they use in {c}?"],
            2,
            &[("c", country)],
            currency,
        );
    }
    const LANGUAGES: &[(&str, &str)] = &[
        ("Brazil", "Portuguese"),
        ("Mexico", "Spanish"),
        ("Argentina", "Spanish"),
        ("Austria", "German"),
        ("Egypt", "Arabic"),
        ("Japan", "Japanese"),
        ("Iran", "Persian"),
        ("Poland", "Polish"),
        ("the Netherlands", "Dutch"),
        ("Greece", "Greek"),
        ("Sweden", "Swedish"),
        ("Finland", "Finnish"),
        ("Hungary", "Hungarian"),
        ("Turkey", "Turkish"),
        ("Vietnam", "Vietnamese"),
        ("Thailand", "Thai"),
        ("Portugal", "Portuguese"),
        ("Chile", "Spanish"),
        ("Israel", "Hebrew"),
        ("South Korea", "Korean"),
        ("Indonesia", "Indonesian"),
        ("Ukraine", "Ukrainian"),
        ("Norway", "Norwegian"),
        ("Denmark", "Danish"),
        ("the Czech Republic", "Czech"),
        ("Romania", "Romanian"),
        ("Italy", "Italian"),
        ("Russia", "Russian"),
    ];
    for &(country, language) in LANGUAGES {
        b.ask(
            &format!("language/{country}"),
            &[
                "What language do they speak in {c}?",
                "What is the main language of {c}?",
                "Which language is spoken in {c}?",
            ],
            2,
            &[("c", country)],
            language,
        );
    }
    const TONGUES: [&str; 8] = ["Spanish", "French", "German", "Italian", "Japanese", "Portuguese", "Dutch", "Chinese"];
    // A word and its translation into each of TONGUES, in order.
    const TRANSLATIONS: &[(&str, [&str; 8])] = &[
        ("hello", ["hola", "bonjour", "hallo", "ciao", "konnichiwa", "ola", "hallo", "ni hao"]),
        ("thank you", ["gracias", "merci", "danke", "grazie", "arigato", "obrigado", "dank je", "xie xie"]),
        (
            "good morning",
            [
                "buenos dias",
                "bonjour",
                "guten Morgen",
                "buongiorno",
                "ohayo gozaimasu",
                "bom dia",
                "goedemorgen",
                "zao shang hao",
            ],
        ),
        (
            "goodbye",
            ["adios", "au revoir", "auf Wiedersehen", "arrivederci", "sayonara", "adeus", "tot ziens", "zai jian"],
        ),
        ("water", ["agua", "eau", "Wasser", "acqua", "mizu", "agua", "water", "shui"]),
        ("cat", ["gato", "chat", "Katze", "gatto", "neko", "gato", "kat", "mao"]),
    ];
    for (word, answers) in TRANSLATIONS {
        for (tongue, answer) in TONGUES.iter().zip(answers) {
            let slots = [("w", *word), ("l", *tongue)];
            let group = format!("translate/{word}/{tongue}");
            b.ask(
                &group,
                &["How do you say {w} in {l}?", "What is {w} in {l}?", "What's the {l} word for {w}?"],
                1,
                &slots,
                answer,
            );
            if keep(&group, 40) {
                b.say(
                    Kind::Request,
                    &group,
                    &["Translate {w} into {l}.", "Please translate {w} to {l}."],
                    1,
                    &slots,
                    Some(answer),
                );
            }
        }
    }
    const SPELL: &[&str] = &[
        "necessary",
        "restaurant",
        "Wednesday",
        "February",
        "rhythm",
        "beautiful",
        "separate",
        "definitely",
        "accommodation",
        "receipt",
        "library",
        "banana",
        "giraffe",
        "broccoli",
        "calendar",
        "environment",
        "government",
        "tomorrow",
        "weird",
        "friend",
        "neighbor",
        "business",
        "chocolate",
        "pharmacy",
        "yacht",
    ];
    for &word in SPELL {
        let letters = word.to_uppercase().chars().map(String::from).collect::<Vec<_>>().join("-");
        b.ask(&format!("spell/{word}"), &["How do you spell {w}?", "How is {w} spelled?"], 1, &[("w", word)], &letters);
        b.say(
            Kind::Request,
            &format!("spell/{word}"),
            &["Spell {w} for me.", "Please spell {w}."],
            1,
            &[("w", word)],
            Some(&letters),
        );
    }
    for (i, pair) in ('A'..='Z').collect::<Vec<_>>().windows(2).enumerate() {
        let (before, after) = (pair[0].to_string(), pair[1].to_string());
        let slots = [("x", before.as_str()), ("y", after.as_str())];
        b.ask(
            &format!("letter-after/{before}"),
            &["What letter comes after {x}?", "Which letter follows {x} in the alphabet?"],
            1,
            &slots,
            &after,
        );
        if i % 2 == 0 {
            b.ask(
                &format!("letter-before/{after}"),
                &["What letter comes before {y}?", "Which letter is just before {y} in the alphabet?"],
                1,
                &slots,
                &before,
            );
        }
    }
    b.ask(
        "alphabet",
        &["How many letters are in the English alphabet?", "How many letters does the alphabet have?"],
        2,
        &[],
        "26",
    );
}

/// Questions whose answer depends on the moment or on the user: no reference answer.
fn open_questions(b: &mut Bank) {
    let q = Kind::Question;
    const WEATHER: &[&str] = &[
        "What's the weather like in {c} {w}?",
        "Will it rain in {c} {w}?",
        "Is it going to snow in {c} {w}?",
        "How hot will it be in {c} {w}?",
        "What's the forecast for {c} {w}?",
        "Is it windy in {c} {w}?",
    ];
    for &city in CITIES {
        for &when in WHEN {
            let group = format!("weather/{city}/{when}");
            if keep(&group, 45) {
                b.say(q, &group, WEATHER, 1, &[("c", city), ("w", when)], None);
            }
        }
        b.say(
            q,
            &format!("time-in/{city}"),
            &["What time is it in {c}?", "What's the time in {c} right now?", "What time is it now in {c}?"],
            1,
            &[("c", city)],
            None,
        );
        b.say(
            q,
            &format!("distance/{city}"),
            &["How far away is {c}?", "How long is the flight to {c}?", "When is the next train to {c}?"],
            1,
            &[("c", city)],
            None,
        );
    }
    for &when in WHEN {
        b.say(
            q,
            &format!("calendar/{when}"),
            &[
                "What's on my calendar {w}?",
                "Do I have any meetings {w}?",
                "Am I busy {w}?",
                "What do I have planned {w}?",
            ],
            3,
            &[("w", when)],
            None,
        );
        b.say(
            q,
            &format!("umbrella/{when}"),
            &["Do I need an umbrella {w}?", "Should I take a coat {w}?", "Will I need sunscreen {w}?"],
            2,
            &[("w", when)],
            None,
        );
    }
    for &place in PLACES {
        b.say(
            q,
            &format!("travel/{place}"),
            &[
                "How long will it take to get to {p}?",
                "How far is it to {p}?",
                "Is there traffic on the way to {p}?",
                "What's the quickest way to {p}?",
            ],
            2,
            &[("p", place)],
            None,
        );
    }
    for &room in ROOMS {
        b.say(
            q,
            &format!("room-state/{room}"),
            &[
                "Are the lights on in the {r}?",
                "What's the temperature in the {r}?",
                "Is the window open in the {r}?",
                "Is anyone in the {r}?",
            ],
            1,
            &[("r", room)],
            None,
        );
    }
    const PERSONAL: &[&str] = &[
        "Did anyone call me?",
        "Do I have any new messages?",
        "How many steps have I walked today?",
        "Is the front door locked?",
        "Which song is this?",
        "Who is singing this song?",
        "What's playing right now?",
        "How much battery do I have left?",
        "When is my next appointment?",
        "What time is my dentist appointment?",
        "How much time is left on my timer?",
        "What alarms do I have set?",
        "What's on my shopping list?",
        "What's the news today?",
        "How did the football game end?",
        "What time does the supermarket close?",
        "Is the pharmacy open on Sunday?",
        "What's the air quality like today?",
        "When does the sun set today?",
        "What time is sunrise tomorrow?",
        "Did I lock the back door?",
        "Is my package arriving today?",
        "Where did I park the car?",
        "What did I ask you to remind me about?",
        "How long have I been sleeping?",
        "What was the last thing I added to my list?",
        "What's a good name for a puppy?",
        "What should I cook for dinner tonight?",
        "Can you hear me?",
        "What can you do?",
        "Are you listening?",
        "What day is it today?",
        "What's today's date?",
        "What time is it?",
        "How long until Christmas?",
        "How many days until the weekend?",
    ];
    for text in PERSONAL {
        b.add(q, text, text, None);
    }
    for &name in NAMES {
        b.say(
            q,
            &format!("contact/{name}"),
            &[
                "When is {n}'s birthday?",
                "What's {n}'s phone number?",
                "Did {n} send me a message?",
                "Where is {n} right now?",
            ],
            1,
            &[("n", name)],
            None,
        );
    }
}

fn home_commands(b: &mut Bank) {
    let c = Kind::Command;
    const MINUTES: &[u32] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20, 25, 30, 35, 40, 45, 50, 60, 90];
    const TIMER: &[&str] = &[
        "Set a timer for {n} {units}.",
        "Set a {n} {unit} timer.",
        "Start a timer for {n} {units}.",
        "Timer for {n} {units}.",
        "Count down {n} {units}.",
        "Put a timer on for {n} {units}.",
    ];
    const FOODS: &[&str] =
        &["pasta", "eggs", "rice", "pizza", "cookies", "bread", "tea", "potatoes", "laundry", "roast", "cake", "oven"];
    let mut durations: Vec<(u32, &str, &str)> =
        MINUTES.iter().map(|&n| (n, if n == 1 { "minute" } else { "minutes" }, "minute")).collect();
    durations.extend([10u32, 15, 20, 30, 45, 90].map(|n| (n, "seconds", "second")));
    durations.extend([(1u32, "hour", "hour"), (2, "hours", "hour"), (3, "hours", "hour")]);
    for &(n, units, unit) in &durations {
        let s = n.to_string();
        let slots = [("n", s.as_str()), ("units", units), ("unit", unit)];
        let group = format!("timer/{n} {units}");
        b.say(c, &group, TIMER, 3, &slots, None);
        for food in FOODS {
            let labeled = format!("{group}/{food}");
            if keep(&labeled, 16) {
                b.say(
                    c,
                    &labeled,
                    &["Set a {n} {unit} timer for the {f}.", "Start a {n} {unit} timer for the {f}."],
                    1,
                    &[("n", &s), ("unit", unit), ("f", food)],
                    None,
                );
            }
        }
        b.say(
            c,
            &format!("timer-add/{n} {units}"),
            &["Add {n} {units} to the timer.", "Add another {n} {units} to my timer."],
            1,
            &slots,
            None,
        );
    }
    for food in FOODS {
        b.say(
            c,
            &format!("timer-stop/{food}"),
            &["Stop the {f} timer.", "Cancel the {f} timer.", "Pause the {f} timer."],
            2,
            &[("f", food)],
            None,
        );
    }
    const ALARM: &[&str] = &[
        "Set an alarm for {t}{d}.",
        "Wake me up at {t}{d}.",
        "Set my alarm for {t}{d}.",
        "I need an alarm at {t}{d}.",
    ];
    const ALARM_DAYS: &[&str] = &["", " tomorrow", " on Monday", " on Saturday", " every weekday", " on Friday"];
    for hour in 4..=11u32 {
        for minute in [0u32, 15, 30, 45] {
            let time = if minute == 0 { format!("{hour} am") } else { format!("{hour}:{minute:02} am") };
            for &day in ALARM_DAYS {
                let group = format!("alarm/{time}{day}");
                if keep(&group, 28) {
                    b.say(c, &group, ALARM, 1, &[("t", &time), ("d", day)], None);
                }
            }
            if keep(&format!("alarm-cancel/{time}"), 40) {
                b.say(
                    c,
                    &format!("alarm-cancel/{time}"),
                    &["Cancel my {t} alarm.", "Turn off the {t} alarm.", "Delete the alarm for {t}."],
                    1,
                    &[("t", &time)],
                    None,
                );
            }
        }
    }
    for n in [5u32, 10, 15] {
        b.say(
            c,
            &format!("snooze/{n}"),
            &["Snooze for {n} minutes.", "Snooze the alarm for {n} minutes."],
            2,
            &[("n", &n.to_string())],
            None,
        );
    }
    const LIGHTS_ON: &[&str] = &[
        "Turn on the {r} lights.",
        "Switch on the lights in the {r}.",
        "Turn the {r} lights on.",
        "Lights on in the {r}.",
        "Can you turn on the lights in the {r}?",
    ];
    const LIGHTS_OFF: &[&str] = &[
        "Turn off the {r} lights.",
        "Switch off the lights in the {r}.",
        "Turn the {r} lights off.",
        "Lights off in the {r}.",
        "Please turn off the lights in the {r}.",
    ];
    const COLORS: &[&str] = &["red", "blue", "green", "purple", "orange", "warm white", "cool white", "pink", "yellow"];
    for &room in ROOMS {
        let slots = [("r", room)];
        b.say(c, &format!("lights-on/{room}"), LIGHTS_ON, 3, &slots, None);
        b.say(c, &format!("lights-off/{room}"), LIGHTS_OFF, 3, &slots, None);
        for percent in [10u32, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100] {
            let group = format!("dim/{room}/{percent}");
            if keep(&group, 22) {
                b.say(
                    c,
                    &group,
                    &[
                        "Dim the {r} lights to {p} percent.",
                        "Set the {r} lights to {p} percent.",
                        "Set the brightness in the {r} to {p} percent.",
                    ],
                    1,
                    &[("r", room), ("p", &percent.to_string())],
                    None,
                );
            }
        }
        for &color in COLORS {
            let group = format!("light-color/{room}/{color}");
            if keep(&group, 20) {
                b.say(
                    c,
                    &group,
                    &["Make the {r} lights {c}.", "Change the {r} lights to {c}.", "Set the lights in the {r} to {c}."],
                    1,
                    &[("r", room), ("c", color)],
                    None,
                );
            }
        }
        b.say(
            c,
            &format!("brightness/{room}"),
            &["Brighten the {r} lights.", "Dim the lights in the {r} a little.", "Make the {r} brighter."],
            1,
            &slots,
            None,
        );
        b.say(
            c,
            &format!("blinds/{room}"),
            &[
                "Open the blinds in the {r}.",
                "Close the curtains in the {r}.",
                "Lower the shades in the {r}.",
                "Raise the blinds in the {r}.",
            ],
            2,
            &slots,
            None,
        );
        for degrees in 16..=25u32 {
            let group = format!("room-temperature/{room}/{degrees}");
            if keep(&group, 12) {
                b.say(
                    c,
                    &group,
                    &[
                        "Set the {r} temperature to {t} degrees.",
                        "Make the {r} {t} degrees.",
                        "Heat the {r} to {t} degrees.",
                    ],
                    1,
                    &[("r", room), ("t", &degrees.to_string())],
                    None,
                );
            }
        }
    }
    for degrees in (16..=26u32).chain([64, 66, 68, 70, 72, 74]) {
        b.say(
            c,
            &format!("thermostat/{degrees}"),
            &[
                "Set the thermostat to {t} degrees.",
                "Set the heating to {t} degrees.",
                "Change the temperature to {t} degrees.",
            ],
            2,
            &[("t", &degrees.to_string())],
            None,
        );
    }
    for n in 1..=4u32 {
        let s = n.to_string();
        let unit = if n == 1 { "degree" } else { "degrees" };
        b.say(
            c,
            &format!("thermostat-up/{n}"),
            &["Turn the heating up by {n} {u}.", "Raise the temperature by {n} {u}."],
            1,
            &[("n", &s), ("u", unit)],
            None,
        );
        b.say(
            c,
            &format!("thermostat-down/{n}"),
            &["Turn the heating down by {n} {u}.", "Lower the temperature by {n} {u}."],
            1,
            &[("n", &s), ("u", unit)],
            None,
        );
    }
    const DEVICES: &[&str] = &[
        "the TV",
        "the fan",
        "the radio",
        "the coffee machine",
        "the dishwasher",
        "the washing machine",
        "the dryer",
        "the oven",
        "the kettle",
        "the robot vacuum",
        "the air purifier",
        "the sprinklers",
        "the porch light",
        "the humidifier",
        "the printer",
        "the space heater",
        "the air conditioning",
        "the electric blanket",
        "the Christmas lights",
        "the garden lights",
    ];
    for &device in DEVICES {
        let slots = [("d", device)];
        b.say(
            c,
            &format!("device-on/{device}"),
            &["Turn on {d}.", "Switch {d} on.", "Start {d}.", "Please turn {d} on."],
            2,
            &slots,
            None,
        );
        b.say(
            c,
            &format!("device-off/{device}"),
            &["Turn off {d}.", "Switch {d} off.", "Stop {d}.", "Shut off {d}."],
            2,
            &slots,
            None,
        );
    }
    for degrees in [180u32, 190, 200, 220, 350, 375, 400, 425] {
        b.say(
            c,
            &format!("oven/{degrees}"),
            &["Preheat the oven to {t} degrees.", "Heat the oven to {t} degrees."],
            1,
            &[("t", &degrees.to_string())],
            None,
        );
    }
    const DOORS: &[&str] = &["front door", "back door", "garage door", "side gate", "patio door", "basement door"];
    for &door in DOORS {
        for (action, templates) in [
            ("lock", &["Lock the {d}.", "Please lock the {d}.", "Make sure the {d} is locked."][..]),
            ("unlock", &["Unlock the {d}.", "Please unlock the {d}."][..]),
            ("open", &["Open the {d}.", "Can you open the {d}?"][..]),
            ("close", &["Close the {d}.", "Shut the {d}."][..]),
        ] {
            b.say(c, &format!("{action}/{door}"), templates, 1, &[("d", door)], None);
        }
    }
    const ITEMS: &[&str] = &[
        "milk",
        "eggs",
        "bread",
        "butter",
        "coffee",
        "tea",
        "apples",
        "bananas",
        "rice",
        "pasta",
        "tomatoes",
        "onions",
        "garlic",
        "cheese",
        "yogurt",
        "orange juice",
        "olive oil",
        "dish soap",
        "toilet paper",
        "batteries",
        "light bulbs",
        "cereal",
        "chicken",
        "carrots",
        "potatoes",
        "flour",
        "sugar",
        "salt",
        "honey",
        "peanut butter",
        "paper towels",
        "shampoo",
        "toothpaste",
        "spinach",
        "lemons",
        "avocados",
        "cat food",
        "dog food",
        "sparkling water",
        "oat milk",
        "frozen peas",
        "ice cream",
        "tortillas",
        "black beans",
        "lettuce",
        "cucumbers",
        "strawberries",
        "grapes",
        "salmon",
        "mushrooms",
    ];
    for &item in ITEMS {
        let slots = [("i", item)];
        b.say(
            c,
            &format!("list-add/{item}"),
            &[
                "Add {i} to my shopping list.",
                "Put {i} on the shopping list.",
                "Add {i} to the grocery list.",
                "Put {i} on my list for the store.",
            ],
            2,
            &slots,
            None,
        );
        b.say(
            c,
            &format!("list-remove/{item}"),
            &["Remove {i} from my shopping list.", "Take {i} off the list.", "Cross {i} off the shopping list."],
            1,
            &slots,
            None,
        );
    }
    const MISC: &[&str] = &[
        "Stop.",
        "Cancel.",
        "Never mind.",
        "Repeat that.",
        "Say that again.",
        "Speak more slowly.",
        "Louder, please.",
        "Go to sleep.",
        "Cancel the timer.",
        "Pause the timer.",
        "Turn off all my alarms.",
        "Turn off all the lights.",
        "Turn on all the lights.",
        "Lock all the doors.",
        "Turn the heating off.",
        "Turn the heat down a little.",
        "Turn on the air conditioning.",
        "Start the robot vacuum in the living room.",
        "Clear my shopping list.",
        "Turn on do not disturb.",
        "Turn off do not disturb.",
        "Switch to night mode.",
        "Good night.",
        "Good morning.",
        "I'm leaving now.",
        "I'm home.",
    ];
    for text in MISC {
        b.add(c, text, text, None);
    }
}

fn media_and_communication(b: &mut Bank) {
    let c = Kind::Command;
    const GENRES: &[&str] = &[
        "jazz",
        "classical music",
        "rock",
        "pop music",
        "hip hop",
        "country music",
        "blues",
        "reggae",
        "lo-fi beats",
        "piano music",
        "rain sounds",
        "relaxing music",
        "eighties hits",
        "folk music",
        "dance music",
        "opera",
        "bossa nova",
        "ambient music",
    ];
    for &genre in GENRES {
        b.say(
            c,
            &format!("genre/{genre}"),
            &["Play some {g}.", "Put on some {g}.", "Play {g}.", "I want to listen to {g}."],
            2,
            &[("g", genre)],
            None,
        );
        for &room in &ROOMS[..6] {
            let group = format!("genre/{genre}/{room}");
            if keep(&group, 15) {
                b.say(
                    c,
                    &group,
                    &["Play {g} in the {r}.", "Put some {g} on in the {r}."],
                    1,
                    &[("g", genre), ("r", room)],
                    None,
                );
            }
        }
    }
    const ARTISTS: &[&str] = &[
        "the Beatles",
        "Mozart",
        "Beethoven",
        "Taylor Swift",
        "Miles Davis",
        "Bob Marley",
        "Queen",
        "Adele",
        "Elvis Presley",
        "ABBA",
        "Nina Simone",
        "Johnny Cash",
        "the Rolling Stones",
        "Ella Fitzgerald",
        "Bach",
        "Chopin",
        "Louis Armstrong",
        "Frank Sinatra",
        "Aretha Franklin",
        "Stevie Wonder",
        "Fleetwood Mac",
        "David Bowie",
        "Dolly Parton",
        "Beyonce",
    ];
    for &artist in ARTISTS {
        b.say(
            c,
            &format!("artist/{artist}"),
            &[
                "Play {a}.",
                "Play something by {a}.",
                "Shuffle songs by {a}.",
                "Play the latest album by {a}.",
                "Put on some {a}.",
            ],
            2,
            &[("a", artist)],
            None,
        );
    }
    const PLAYBACK: &[&str] = &[
        "Pause the music.",
        "Resume the music.",
        "Skip this song.",
        "Play the next track.",
        "Go back to the previous song.",
        "Turn the volume up.",
        "Turn it down a bit.",
        "Mute the TV.",
        "Unmute the TV.",
        "Stop the music.",
        "Play that song again.",
        "Shuffle my playlist.",
        "Play my workout playlist.",
        "Play my favorite songs.",
        "Like this song.",
        "Repeat this song.",
        "Play the news.",
        "Play the latest episode of my podcast.",
        "Turn on the radio.",
        "Read my audiobook.",
    ];
    for text in PLAYBACK {
        b.add(c, text, text, None);
    }
    for level in 1..=10u32 {
        b.say(
            c,
            &format!("volume/{level}"),
            &["Set the volume to {n}.", "Volume {n}.", "Change the volume to {n}."],
            2,
            &[("n", &level.to_string())],
            None,
        );
    }
    for percent in [10u32, 20, 30, 40, 50, 60, 70, 80] {
        b.say(
            c,
            &format!("volume-percent/{percent}"),
            &["Set the volume to {n} percent.", "Turn the volume to {n} percent."],
            1,
            &[("n", &percent.to_string())],
            None,
        );
    }
    // Complete clauses, so "Text Anna that ..." reads well.
    const NEWS: &[&str] = &[
        "I'm running late",
        "I'll be home soon",
        "dinner is ready",
        "I'm on my way",
        "the meeting is cancelled",
        "I left my keys at home",
        "I'll see you at the station",
        "I need a lift",
        "the kids are asleep",
        "I'm stuck in traffic",
        "I'll call you later",
        "the package has arrived",
    ];
    for &name in NAMES {
        let slots = [("n", name)];
        b.say(
            c,
            &format!("call/{name}"),
            &["Call {n}.", "Call {n} on speaker.", "Video call {n}.", "Phone {n}.", "Ring {n}."],
            2,
            &slots,
            None,
        );
        b.say(
            c,
            &format!("read/{name}"),
            &["Read my messages from {n}.", "Read the last message from {n}.", "Send a text to {n}."],
            1,
            &slots,
            None,
        );
        for &news in NEWS {
            let group = format!("text/{name}/{news}");
            if keep(&group, 22) {
                b.say(
                    c,
                    &group,
                    &[
                        "Text {n} that {m}.",
                        "Send a message to {n} saying {m}.",
                        "Tell {n} that {m}.",
                        "Message {n}: {m}.",
                    ],
                    1,
                    &[("n", name), ("m", news)],
                    None,
                );
            }
        }
    }
    for &place in PLACES {
        b.say(
            c,
            &format!("navigate/{place}"),
            &["Navigate to {p}.", "Take me to {p}.", "Get directions to {p}.", "Start navigation to {p}."],
            2,
            &[("p", place)],
            None,
        );
    }
}

fn requests(b: &mut Bank) {
    let r = Kind::Request;
    const TASKS: &[&str] = &[
        "call the dentist",
        "take out the trash",
        "water the plants",
        "pick up the dry cleaning",
        "pay the electricity bill",
        "feed the cat",
        "walk the dog",
        "book a haircut",
        "renew my passport",
        "take my medicine",
        "check the oven",
        "call my mother",
        "send the invoice",
        "return the library books",
        "charge my phone",
        "move the car",
        "back up my laptop",
        "drink some water",
        "submit the report",
        "pack my gym bag",
        "defrost the chicken",
        "email the landlord",
        "order more printer ink",
        "cancel the gym membership",
        "check the mail",
        "buy a birthday card",
        "stretch",
        "go to bed",
        "lock the back door",
        "put the laundry in the dryer",
    ];
    const REMIND_WHEN: &[&str] = &[
        "at 6 pm",
        "tomorrow morning",
        "tonight",
        "in 20 minutes",
        "in an hour",
        "on Friday",
        "this afternoon",
        "next week",
        "at noon",
        "every morning",
        "on Sunday evening",
        "in 10 minutes",
    ];
    const REMIND: &[&str] = &[
        "Remind me to {t} {w}.",
        "Can you remind me to {t} {w}?",
        "Please remind me {w} to {t}.",
        "Set a reminder to {t} {w}.",
        "Don't let me forget to {t} {w}.",
    ];
    for &task in TASKS {
        for &when in REMIND_WHEN {
            let group = format!("remind/{task}/{when}");
            if keep(&group, 40) {
                b.say(r, &group, REMIND, 1, &[("t", task), ("w", when)], None);
            }
        }
        b.say(
            r,
            &format!("todo/{task}"),
            &["Add a task to {t}.", "Add to my to-do list: {t}.", "Make a to-do item to {t}."],
            1,
            &[("t", task)],
            None,
        );
    }
    const TOPICS: &[&str] = &[
        "cats",
        "dogs",
        "space",
        "dinosaurs",
        "the ocean",
        "penguins",
        "computers",
        "music",
        "history",
        "football",
        "cooking",
        "trains",
        "robots",
        "elephants",
        "volcanoes",
        "the moon",
        "bees",
        "pirates",
    ];
    for &topic in TOPICS {
        b.say(
            r,
            &format!("joke/{topic}"),
            &[
                "Tell me a joke about {t}.",
                "Do you know any jokes about {t}?",
                "Tell me a fun fact about {t}.",
                "Tell me something interesting about {t}.",
            ],
            2,
            &[("t", topic)],
            None,
        );
        b.say(
            r,
            &format!("story/{topic}"),
            &[
                "Tell me a short story about {t}.",
                "Recommend a book about {t}.",
                "Find a documentary about {t}.",
                "Read me the latest news about {t}.",
            ],
            2,
            &[("t", topic)],
            None,
        );
    }
    const DISHES: &[&str] = &[
        "pancakes",
        "lasagna",
        "banana bread",
        "chicken curry",
        "vegetable soup",
        "guacamole",
        "chocolate chip cookies",
        "a Caesar salad",
        "fried rice",
        "tomato sauce",
        "scrambled eggs",
        "lemon cake",
        "hummus",
        "chili con carne",
        "mushroom risotto",
        "apple pie",
        "pad thai",
        "French toast",
        "garlic bread",
        "a fruit smoothie",
    ];
    for &dish in DISHES {
        b.say(
            r,
            &format!("recipe/{dish}"),
            &[
                "Give me a recipe for {d}.",
                "Find me a recipe for {d}.",
                "Can you help me make {d}?",
                "What ingredients do I need for {d}?",
                "Walk me through making {d}.",
            ],
            3,
            &[("d", dish)],
            None,
        );
    }
    const CUISINES: &[&str] = &[
        "Italian",
        "Thai",
        "Indian",
        "Mexican",
        "Japanese",
        "Chinese",
        "Greek",
        "vegetarian",
        "Lebanese",
        "Korean",
        "Ethiopian",
        "French",
    ];
    for &cuisine in CUISINES {
        b.say(
            r,
            &format!("restaurant/{cuisine}"),
            &[
                "Find an {c} restaurant near me.",
                "Find a good {c} restaurant nearby.",
                "Order {c} food for dinner.",
                "Where can I get {c} food around here?",
            ],
            2,
            &[("c", cuisine)],
            None,
        );
    }
    for people in 2..=8u32 {
        for time in ["6 pm", "7 pm", "7:30 pm", "8 pm", "noon", "1 pm"] {
            let group = format!("table/{people}/{time}");
            if keep(&group, 40) {
                b.say(
                    r,
                    &group,
                    &[
                        "Book a table for {n} at {t}.",
                        "Reserve a table for {n} people at {t}.",
                        "Can you book dinner for {n} at {t}?",
                    ],
                    1,
                    &[("n", &people.to_string()), ("t", time)],
                    None,
                );
            }
        }
    }
    for &city in CITIES {
        for &day in DAYS {
            let group = format!("flight/{city}/{day}");
            if keep(&group, 10) {
                b.say(
                    r,
                    &group,
                    &[
                        "Find me a flight to {c} on {d}.",
                        "Book a train to {c} on {d}.",
                        "Look for hotels in {c} for {d} night.",
                    ],
                    1,
                    &[("c", city), ("d", day)],
                    None,
                );
            }
        }
        if keep(&format!("trip/{city}"), 50) {
            b.say(
                r,
                &format!("trip/{city}"),
                &["Help me plan a trip to {c}.", "Suggest things to do in {c}.", "Find a cheap hotel in {c}."],
                1,
                &[("c", city)],
                None,
            );
        }
    }
    for &place in PLACES {
        b.say(
            r,
            &format!("taxi/{place}"),
            &["Order a taxi to {p}.", "Call me a cab to {p}.", "Book a ride to {p}."],
            2,
            &[("p", place)],
            None,
        );
    }
    const WORDS: &[&str] = &[
        "serendipity",
        "ubiquitous",
        "ephemeral",
        "benevolent",
        "meticulous",
        "nostalgia",
        "pragmatic",
        "resilient",
        "eloquent",
        "candid",
        "whimsical",
        "frugal",
    ];
    for &word in WORDS {
        b.say(
            r,
            &format!("define/{word}"),
            &["Define {w}.", "Tell me what {w} means.", "Give me a synonym for {w}.", "Use {w} in a sentence."],
            2,
            &[("w", word)],
            None,
        );
    }
    for minutes in [5u32, 10, 15, 20] {
        b.say(
            r,
            &format!("meditate/{minutes}"),
            &["Start a {n} minute meditation.", "Guide me through a {n} minute breathing exercise."],
            2,
            &[("n", &minutes.to_string())],
            None,
        );
    }
    const HELP: &[&str] = &[
        "Tell me a joke.",
        "Tell me a story.",
        "Read me the news.",
        "Give me the weather forecast.",
        "Suggest a good movie for tonight.",
        "Give me some ideas for dinner.",
        "Play a game with me.",
        "Help me relax.",
        "Read my last email.",
        "Summarize my emails.",
        "Find a pharmacy that's open now.",
        "Check if the library is open.",
        "Find the nearest coffee shop.",
        "Help me with my homework.",
        "Recommend a podcast.",
        "Sing me a song.",
        "Flip a coin.",
        "Roll a die.",
        "Pick a random number between 1 and 10.",
        "Help me write a birthday message.",
        "Give me a word of the day.",
        "Quiz me on capital cities.",
        "Teach me a new word.",
        "Find my phone.",
        "Read me my schedule for tomorrow.",
        "Remind me where I parked.",
        "Help me fall asleep.",
        "Give me a workout for today.",
        "Tell me something that will cheer me up.",
        "Order my usual coffee.",
    ];
    for text in HELP {
        b.add(r, text, text, None);
    }
}

/// Message bodies and notes, as someone would dictate them.
fn dictation(b: &mut Bank) {
    let d = Kind::Dictation;
    const SUBJECTS: &[&str] = &[
        "I",
        "we",
        "the kids",
        "my brother",
        "our neighbor",
        "the delivery driver",
        "Sarah",
        "the plumber",
        "Grandma",
        "the whole team",
        "my manager",
        "the landlord",
        "Tom",
        "my sister",
    ];
    const WILL: &[&str] = &[
        "will be a little late",
        "will pick up the groceries",
        "will bring the dessert",
        "will call you back",
        "might need a lift",
        "can't make it",
        "will be working from home",
        "will meet us at the restaurant",
        "will take the early train",
        "might stay a bit longer",
        "will finish the report",
        "can look after the dog",
        "will drop off the keys",
    ];
    const LATER: &[&str] = &[
        "tonight",
        "tomorrow morning",
        "on Friday",
        "after lunch",
        "this weekend",
        "next Tuesday",
        "around six",
        "before the meeting",
        "by the end of the day",
    ];
    const DID: &[&str] = &[
        "paid the electricity bill",
        "left the keys under the mat",
        "booked the hotel for our trip",
        "finished the first draft",
        "fixed the kitchen sink",
        "sent the photos",
        "found your blue scarf",
        "cleaned the garage",
        "forgot the charger at the office",
        "ordered a new lamp",
        "fed the cat",
        "watered the tomatoes",
    ];
    const EARLIER: &[&str] =
        &["this morning", "yesterday", "last night", "on Monday", "an hour ago", "earlier today", "last week"];
    for &subject in SUBJECTS {
        for (predicates, times) in [(WILL, LATER), (DID, EARLIER)] {
            for &predicate in predicates {
                let group = format!("note/{subject}/{predicate}");
                for &time in times {
                    if keep(&format!("{group}/{time}"), 13) {
                        b.add(d, &group, &format!("{subject} {predicate} {time}."), None);
                    }
                }
            }
        }
    }
    const MEET_PLACES: &[&str] = &[
        "the cafe",
        "the library",
        "the park entrance",
        "the station",
        "the office",
        "the cinema",
        "your place",
        "the bakery",
    ];
    const MEET_TIMES: &[&str] = &["9", "10:30", "noon", "2", "4:15", "half past six"];
    for &place in MEET_PLACES {
        for &time in MEET_TIMES {
            for &day in DAYS {
                let group = format!("meet/{place}/{time}/{day}");
                if keep(&group, 14) {
                    b.add(d, &group, &format!("Let's meet at {place} at {time} on {day}."), None);
                }
            }
        }
    }
    const DOCS: &[&str] = &[
        "slides",
        "invoice",
        "report",
        "contract",
        "photos",
        "schedule",
        "budget",
        "agenda",
        "receipts",
        "meeting notes",
    ];
    for &doc in DOCS {
        for &day in DAYS[..5].iter().chain(&["tomorrow", "the end of the week"]) {
            let group = format!("send/{doc}/{day}");
            if keep(&group, 50) {
                b.add(d, &group, &format!("Please send me the {doc} by {day}."), None);
            }
        }
    }
    const EVENTS: &[&str] = &[
        "meeting",
        "dentist appointment",
        "team lunch",
        "school play",
        "football practice",
        "book club",
        "piano lesson",
        "job interview",
        "parent teacher meeting",
        "yoga class",
    ];
    for &event in EVENTS {
        for &day in DAYS {
            for &time in MEET_TIMES {
                let group = format!("moved/{event}/{day}/{time}");
                if keep(&group, 9) {
                    b.add(d, &group, &format!("The {event} has been moved to {day} at {time}."), None);
                }
            }
        }
    }
    const GIFTS: &[&str] = &[
        "flowers",
        "lovely card",
        "birthday present",
        "book",
        "chocolates",
        "dinner",
        "help with the move",
        "ride home",
    ];
    const CLOSINGS: &[&str] =
        &["it really made my day", "you are too kind", "I really appreciate it", "it was very thoughtful"];
    for &gift in GIFTS {
        for &closing in CLOSINGS {
            b.add(d, &format!("thanks/{gift}/{closing}"), &format!("Thanks so much for the {gift}, {closing}."), None);
        }
    }
    const NOTES: &[&str] = &[
        "Happy birthday, I hope you have a wonderful day.",
        "I'm sorry I missed your call earlier.",
        "Don't forget to bring your passport.",
        "The car needs new tires before winter.",
        "Can we push our call to next week?",
        "Buy flowers for the anniversary.",
        "The water bill is due on the fifteenth.",
        "Ask the doctor about the test results.",
        "The spare key is in the blue flower pot.",
        "Remember to water the garden while we're away.",
        "The wifi password is on the fridge.",
        "I've attached the photos from the wedding.",
        "Our flight lands at seven in the evening.",
        "Please don't park in front of the garage.",
        "The school trip is next Thursday.",
        "Let me know if you need anything else.",
        "I'll send you the address in a minute.",
        "Congratulations on the new job.",
        "Get well soon, we're all thinking of you.",
        "The printer on the second floor is broken again.",
        "Lunch is on me next time.",
        "We're out of milk and coffee.",
        "See you at the usual place.",
        "Call me when you land.",
        "Looking forward to seeing you all on Saturday.",
        "The kids have a half day on Friday.",
        "Idea for the garden: plant tomatoes along the fence.",
        "Book the car in for its service next month.",
        "The neighbors are having a party tonight.",
        "Check whether the museum is open on Mondays.",
        "The recipe needs two cups of flour and one egg.",
        "Bring a warm jacket, it will be cold in the mountains.",
        "The meeting went well, they liked the proposal.",
        "I've moved the dentist appointment to the morning.",
        "Grandma's train arrives at platform four.",
        "Please feed the fish while I'm away.",
        "The heating engineer is coming on Wednesday.",
        "Don't wait up for me tonight.",
        "I love the new photos of the baby.",
        "The parcel was left with the neighbor.",
    ];
    for text in NOTES {
        b.add(d, text, text, None);
    }
}
