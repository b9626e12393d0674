package product

import "strings"

// MaxAmount bounds prices at ten billion major units of a two-decimal currency: far above any
// real listing, far below the range where JSON numbers lose integer precision.
const MaxAmount int64 = 1_000_000_000_000

// Money is an amount in the minor unit of an ISO 4217 currency (cents for EUR). Integers avoid
// the rounding errors of binary floating point in prices.
type Money struct {
	amount   int64
	currency string
}

// NewMoney validates an amount in minor units and an ISO 4217 currency code.
func NewMoney(amount int64, currency string) (Money, error) {
	var errs fieldErrors
	validateMoney(&errs, "price", amount, currency)
	if err := errs.err(); err != nil {
		return Money{}, err
	}
	return Money{amount: amount, currency: currency}, nil
}

func validateMoney(errs *fieldErrors, field string, amount int64, currency string) {
	if amount < 0 {
		errs.add(field+".amount", "must not be negative")
	} else if amount > MaxAmount {
		errs.add(field+".amount", "is too large")
	}
	if !IsCurrency(currency) {
		errs.add(field+".currency", "must be an active ISO 4217 code such as EUR or USD")
	}
}

// Amount is the amount in minor units.
func (m Money) Amount() int64 { return m.amount }

// Currency is the ISO 4217 code.
func (m Money) Currency() string { return m.currency }

// IsCurrency reports whether code is an active ISO 4217 currency code (upper case).
func IsCurrency(code string) bool {
	if len(code) != 3 || strings.ToUpper(code) != code {
		return false
	}
	_, ok := currencies[code]
	return ok
}

// currencies holds the active ISO 4217 codes (list of 2024), funds and precious metals excluded.
var currencies = func() map[string]struct{} {
	const codes = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN " +
		"BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP " +
		"GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF " +
		"KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR " +
		"MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG " +
		"SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU " +
		"UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG"
	m := make(map[string]struct{}, 180)
	for _, c := range strings.Fields(codes) {
		m[c] = struct{}{}
	}
	return m
}()
